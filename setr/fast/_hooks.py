"""Whether a module has hooks: a fast path that skips calling a module would skip them."""

from __future__ import annotations

from torch import nn

__all__ = ["has_hooks"]


def has_hooks(*modules: nn.Module) -> bool:
    """Whether any of ``modules`` (not their children) has forward or forward-pre hooks."""
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)
