"""Optimiser parameter groups (head multiplier, layer-wise lr decay, weight-decay exemptions) and the
official SETR optimiser: SGD with every head parameter at 10x the base learning rate."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from ..models import SETRConfig

__all__ = ["HEAD_PREFIXES", "build_optimizer", "layer_id", "param_groups"]

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


def _unwrap(model: nn.Module) -> nn.Module:
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def _depth(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    if isinstance(config, SETRConfig):
        return config.depth
    blocks = [re.match(r"encoder\.blocks\.(\d+)\.", name) for name, _ in model.named_parameters()]
    return 1 + max((int(m.group(1)) for m in blocks if m), default=-1)


def layer_id(name: str, depth: int) -> int:
    """The layer-decay layer of a parameter, as timm numbers them through
    :meth:`setr.SETR.group_matcher`: 0 the embeddings, ``i + 1`` encoder block ``i``,
    ``depth + 1`` everything after the encoder (MLA neck, heads)."""
    name = _bare_name(name)
    match = re.match(r"encoder\.blocks\.(\d+)\.", name)
    if match:
        return int(match.group(1)) + 1
    if re.match(r"encoder\.(cls_token|pos_embed|patch_embed)", name):
        return 0
    return depth + 1


def param_groups(
    model: nn.Module,
    lr: float,
    head_lr_mult: float = 10.0,
    weight_decay: float = 0.0,
    head_prefixes: Sequence[str] = HEAD_PREFIXES,
    layer_decay: float | None = None,
    no_weight_decay: bool | Iterable[str] = True,
) -> list[dict[str, Any]]:
    """Optimiser parameter groups of the trainable parameters (frozen ones are left out).

    Without ``layer_decay``: the backbone group (1x) and the head group (``head_lr_mult`` x), as the
    official recipe. With ``layer_decay`` (BEiT-style, as timm's): the embeddings train at
    ``layer_decay ** (depth + 1)`` x ``lr``, encoder block ``i`` at ``layer_decay ** (depth - i)``,
    the MLA neck at 1x and the heads at ``head_lr_mult`` x.

    Args:
        model: a :class:`setr.SETR`, possibly wrapped in DDP or ``torch.compile``.
        lr: the base learning rate.
        head_lr_mult: the heads' multiplier (official: 10).
        weight_decay: the weight decay of decayed parameters (official: 0).
        head_prefixes: parameter-name prefixes of the head group.
        layer_decay: the per-block learning-rate decay (e.g. 0.65-0.9), or ``None`` for none.
        no_weight_decay: with ``weight_decay > 0``: ``True`` exempts biases, norm weights (all 1-D
            parameters) and ``model.no_weight_decay()`` (position embedding, cls token); an
            iterable of parameter names exempts the 1-D parameters and those; ``False`` none.

    Returns:
        Groups with ``name``, ``params``, ``lr`` (already scaled; a scheduler such as
        :class:`setr.training.PolyLR` decays each from there), ``lr_mult`` (the scale) and
        ``weight_decay``; empty groups are left out. Layer groups are named ``layer_<id>[_no_decay]`` and ``head[_no_decay]``.
    """
    bare_model = _unwrap(model)
    if no_weight_decay is True:
        exempt = set(getattr(bare_model, "no_weight_decay", set)())
    elif no_weight_decay is False:
        exempt = None
    else:
        exempt = set(no_weight_decay)
    depth = _depth(bare_model)
    groups: dict[str, dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        bare = _bare_name(name)
        is_head = bare.startswith(tuple(head_prefixes))
        if layer_decay is None:
            key, scale = ("head", head_lr_mult) if is_head else ("backbone", 1.0)
        else:
            layer = layer_id(bare, depth)
            key = "head" if is_head else f"layer_{layer}"
            scale = (head_lr_mult if is_head else 1.0) * layer_decay ** (depth + 1 - layer)
        decays = weight_decay > 0 and not (exempt is not None and (param.ndim <= 1 or bare in exempt))
        if weight_decay > 0 and not decays:
            key += "_no_decay"
        group = groups.setdefault(
            key, dict(name=key, params=[], lr=lr * scale, lr_mult=scale, weight_decay=weight_decay if decays else 0.0)
        )
        group["params"].append(param)
    return list(groups.values())


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
