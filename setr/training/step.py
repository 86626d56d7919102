"""One optimiser step of SETR training: micro-batches, mixed precision, loss scaling, DDP sync once."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from ..distributed import DistributedContext

__all__ = ["train_step"]


def train_step(
    net: nn.Module,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    criterion: Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    autocast: contextlib.AbstractContextManager,
    accum_steps: int,
    ctx: DistributedContext,
) -> dict[str, float]:
    """One optimiser step over ``accum_steps`` micro-batches; returns the mean loss terms.

    Args:
        net: the model (possibly DDP- or compile-wrapped); called as ``net(images, return_aux=True)``.
        batches: yields ``(images (B, 3, H, W), labels (B, H, W))``.
        criterion: ``(logits, aux, labels) -> (loss, {name: term})`` (:class:`setr.training.SETRLoss`).
        optimizer: stepped once.
        scheduler: stepped once per iteration, as the official poly schedule.
        scaler: the gradient scaler (a no-op unless fp16).
        autocast: the mixed-precision context the forward runs in.
        accum_steps: micro-batches per step; under DDP gradients are all-reduced on the last only.
        ctx: where this process stands (device, whether distributed).
    """
    totals: dict[str, float] = {}
    for micro in range(accum_steps):
        images, labels = (t.to(ctx.device, non_blocking=True) for t in next(batches))
        last = micro == accum_steps - 1
        with contextlib.nullcontext() if last or not ctx.distributed else net.no_sync():
            with autocast:
                logits, aux = net(images, return_aux=True)
            loss, parts = criterion(logits, aux, labels)
            scaler.scale(loss / accum_steps).backward()
        for key, value in {"loss": loss.detach(), **parts}.items():
            totals[key] = totals.get(key, 0.0) + float(value) / accum_steps
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    return totals
