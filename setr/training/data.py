"""Resumable, rank-sharded sampling for iteration-based training, with per-sample augmentation seeds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from ..data.datasets import sample_pair
from ..data.transforms import apply_transform

__all__ = ["AugmentedDataset", "TrainSampler", "sample_pair"]


class TrainSampler(Sampler):
    """An endless stream of ``(index, seed)`` for one rank, restartable at any position.

    Epoch ``e`` is :class:`torch.utils.data.DistributedSampler`'s shuffle for ``set_epoch(e)``
    (the same permutation on every rank, shared out round-robin). Each draw also carries a seed for
    its augmentation, a function of ``(seed, epoch, position in the epoch's permutation)``. Both are
    independent of the number of workers and of interruptions, so:

    * a run resumed with ``start = samples this rank already consumed`` sees exactly the samples
      and augmentations an uninterrupted run would;
    * the global batch of a step is the same set of samples whatever the world size, as long as
      ``batch per rank x world size`` stays the same.
    """

    def __init__(self, size: int, seed: int = 0, rank: int = 0, world_size: int = 1, start: int = 0) -> None:
        """
        Args:
            size: dataset length.
            seed: shuffle and augmentation seed.
            rank: this process's rank.
            world_size: number of processes.
            start: how many samples this rank has already consumed (to resume).
        """
        if size <= 0:
            raise ValueError("the training dataset is empty")
        self.size = size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start = start

    def _epoch_indices(self, epoch: int) -> list[int]:
        sampler = DistributedSampler(
            range(self.size), num_replicas=self.world_size, rank=self.rank, shuffle=True, seed=self.seed
        )
        sampler.set_epoch(epoch)
        return list(sampler)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        per_rank = -(-self.size // self.world_size)
        epoch, offset = divmod(self.start, per_rank)
        while True:
            indices = self._epoch_indices(epoch)
            for k in range(offset, len(indices)):
                position = k * self.world_size + self.rank
                seed = int(np.random.SeedSequence([self.seed, epoch, position]).generate_state(1)[0])
                yield indices[k], seed
            epoch, offset = epoch + 1, 0


class AugmentedDataset(Dataset):
    """A dataset of ``(image uint8 (3, H, W), label (H, W))`` samples (pairs or ``{"image", "mask"}``
    dicts) seen through a pair transform.

    Indexed by ``(index, seed)`` (what :class:`TrainSampler` yields), each sample is augmented under
    its own seed (:func:`setr.data.transforms.apply_transform`); a plain ``index`` uses torch's
    global generator.
    """

    def __init__(self, dataset: Dataset, transform: Callable[..., Any]) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = item if isinstance(item, tuple) else (item, None)
        image, label = sample_pair(self.dataset[index])
        return apply_transform(self.transform, image, label, seed)
