"""The official SETR optimiser: SGD with every head parameter at 10x the base learning rate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["HEAD_PREFIXES", "build_optimizer", "param_groups"]

HEAD_PREFIXES = ("decode_head.", "aux_heads.")
"""Parameter-name prefixes trained at ``head_lr_mult`` x the base lr (the official ``'head'`` key
matched ``decode_head.*`` and ``auxiliary_head.*``; the MLA neck and the encoder stay at 1x)."""

# Wrappers that prefix parameter names: DistributedDataParallel and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _bare_name(name: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name, stripped = name[len(prefix) :], True
    return name


def param_groups(
    model: nn.Module,
    lr: float,
    head_lr_mult: float = 10.0,
    weight_decay: float = 0.0,
    head_prefixes: Sequence[str] = HEAD_PREFIXES,
) -> list[dict[str, Any]]:
    """Split the trainable parameters into the backbone group (1x) and the head group (``head_lr_mult`` x).

    Args:
        model: a :class:`setr.SETR`, possibly wrapped in DDP or ``torch.compile``.
        lr: the base learning rate.
        head_lr_mult: the heads' multiplier (official: 10).
        weight_decay: applied to every parameter (official: 0).
        head_prefixes: parameter-name prefixes of the head group.

    Returns:
        Two optimiser parameter groups, ``name`` ``"backbone"`` then ``"head"``, each with its
        ``lr`` (already multiplied) and ``lr_mult``; empty groups are left out.
    """
    backbone, heads = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (heads if _bare_name(name).startswith(tuple(head_prefixes)) else backbone).append(param)
    groups = [
        dict(name="backbone", params=backbone, lr=lr, lr_mult=1.0, weight_decay=weight_decay),
        dict(name="head", params=heads, lr=lr * head_lr_mult, lr_mult=head_lr_mult, weight_decay=weight_decay),
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(
    model: nn.Module,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    head_lr_mult: float = 10.0,
) -> torch.optim.SGD:
    """``SGD(momentum 0.9, weight decay 0)`` over :func:`param_groups`: the official SETR optimiser."""
    if lr <= 0:
        raise ValueError(f"the learning rate must be positive, got {lr}")
    return torch.optim.SGD(param_groups(model, lr, head_lr_mult, weight_decay), lr=lr, momentum=momentum)
