"""Putting a model and its data on the training devices: wrappers, mixed precision, the data loader."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from ..distributed import DistributedContext
from ..dtypes import parse_precision, precision_dtype
from .data import AugmentedDataset, TrainSampler

__all__ = ["AMP", "mixed_precision", "train_loader", "wrap_for_training"]

AMP = ("none", "bf16", "fp16")
"""The values ``amp`` takes: no autocast, or autocast to bf16 / fp16 (fp16 with a gradient scaler)."""


def wrap_for_training(model: nn.Module, ctx: DistributedContext, compile: bool = False) -> nn.Module:
    """The module the training loop calls: SyncBatchNorm and DDP across GPUs, ``torch.compile`` if
    asked. The parameters stay those of ``model`` (``unwrap_model`` gets it back)."""
    if ctx.distributed and ctx.device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # keeps the same parameters
    net = torch.compile(model) if compile else model
    if ctx.distributed:
        net = DistributedDataParallel(net, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None)
    return net


def mixed_precision(
    device: torch.device, amp: str = "none", grad_checkpointing: bool = False
) -> tuple[contextlib.AbstractContextManager, torch.amp.GradScaler]:
    """``(autocast context, grad scaler)`` for ``amp`` = ``none``, ``bf16`` or ``fp16`` (scaled);
    :mod:`setr.dtypes`'s aliases (``bfloat16``, ``half``, ...) are taken too."""
    amp = parse_precision(amp, AMP, "amp")
    # Autocast's weight cache keeps a low-precision copy of every weight for the whole forward,
    # which checkpointing cannot drop; with checkpointing each use casts again instead.
    autocast = torch.autocast(
        device.type,
        dtype=precision_dtype(amp) if amp != "none" else None,  # None: autocast's default, unused when off
        enabled=amp != "none",
        cache_enabled=not grad_checkpointing,
    )
    return autocast, torch.amp.GradScaler(device.type, enabled=amp == "fp16")


def train_loader(
    dataset: Dataset,
    transform: Callable[..., Any],
    batch_size: int,
    workers: int,
    seed: int,
    ctx: DistributedContext,
    start: int = 0,
) -> DataLoader:
    """An endless loader of augmented ``(images, labels)`` batches for this rank, restartable exactly.

    Args:
        dataset: training samples (pairs or ``{"image", "mask"}`` dicts).
        transform: the pair transform (:func:`setr.data.transforms.train_transform`).
        batch_size: per-process batch of one micro-step.
        workers: data-loading processes.
        seed: the run's seed (sampling order and per-sample augmentation).
        ctx: this process's rank and device.
        start: samples this rank has already trained on (a resumed run continues the stream there).
    """
    return DataLoader(
        AugmentedDataset(dataset, transform), batch_size=batch_size, num_workers=workers, drop_last=True,
        sampler=TrainSampler(len(dataset), seed, ctx.rank, ctx.world_size, start=start),
        pin_memory=ctx.device.type == "cuda", persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),  # leaves the global generator alone
    )  # fmt: skip
