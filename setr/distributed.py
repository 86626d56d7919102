"""Process-group setup for ``torchrun`` (one process per GPU, or several CPU processes with gloo).

Shared by training (``examples/train.py``) and evaluation (``setr eval``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .devices import resolve_device

__all__ = [
    "DistributedContext",
    "all_gather_objects",
    "cleanup_distributed",
    "init_distributed",
    "rank_digests",
    "share_cpu_threads",
]


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

    Raises:
        ValueError: the device does not exist here (one line naming the devices that do).
    """
    use_cuda = resolve_device(device, flag="--device").type == "cuda"
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


def all_gather_objects(value: object, ctx: DistributedContext) -> list[object]:
    """``value`` from every rank, in rank order (``[value]`` in a single process)."""
    if not ctx.distributed:
        return [value]
    gathered: list[object] = [None] * ctx.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def rank_digests(model: torch.nn.Module, ctx: DistributedContext) -> list[str]:
    """A SHA-256 of the model's state from every rank: all equal when the ranks agree."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return [str(d) for d in all_gather_objects(digest.hexdigest(), ctx)]


def share_cpu_threads(ctx: DistributedContext, workers: int | None = None, threads: int | None = None) -> int:
    """Share the cores between the processes on this machine and their data-loading workers.

    Each process gets ``cores / LOCAL_WORLD_SIZE`` cores; ``torch`` threads are those less its
    workers (or ``threads``). Returns the workers to use: ``workers``, or by default up to 8 on
    CUDA (the GPU waits on data) and 1 on a CPU with at least two cores of its own (else 0).
    """
    cores = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if workers is None:
        workers = min(8, cores - 1) if ctx.device.type == "cuda" else int(cores >= 2)
    torch.set_num_threads(threads or max(1, cores - workers))
    return workers
