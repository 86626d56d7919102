"""Process-group setup for ``torchrun`` (one process per GPU, or several CPU processes with gloo)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistributedContext", "cleanup_distributed", "init_distributed"]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: ``rank`` of ``world_size``, its ``local_rank`` and ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | None = None) -> DistributedContext:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    ``nccl`` on CUDA (each process on GPU ``LOCAL_RANK``), ``gloo`` on CPU. Without ``torchrun``
    (no ``WORLD_SIZE`` > 1) nothing is initialised and the context is a single process.

    Args:
        device: ``"cuda"``, ``"cpu"`` or ``None`` for CUDA when available.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    use_cuda = torch.device(device).type == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        target = torch.device("cuda", local_rank)
    else:
        target = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=target if use_cuda else None)
    return DistributedContext(rank, world_size, local_rank, target)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
