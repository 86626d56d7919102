"""The poly learning-rate schedule of SETR, per iteration, down to a floor."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["PolyLR", "poly_lr"]


def poly_lr(base_lr: float, iteration: int, max_iters: int, power: float = 0.9, min_lr: float = 1e-4) -> float:
    """``(base_lr - min_lr) * (1 - iteration / max_iters) ** power + min_lr`` (mmcv ``PolyLrUpdaterHook``).

    ``iteration`` counts the optimiser steps already taken: iteration 0 trains at ``base_lr``;
    beyond ``max_iters`` the rate stays at ``min_lr``.
    """
    progress = min(max(iteration, 0), max_iters) / max_iters
    return (base_lr - min_lr) * (1.0 - progress) ** power + min_lr


class PolyLR(LRScheduler):
    """:func:`poly_lr` for every parameter group, from that group's initial lr; call ``step()`` after
    each optimiser step. Its ``state_dict`` resumes it exactly.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        max_iters: int,
        power: float = 0.9,
        min_lr: float = 1e-4,
        last_epoch: int = -1,
    ) -> None:
        """
        Args:
            optimizer: the optimiser; each group's ``lr`` at construction is its base lr.
            max_iters: total training iterations (optimiser steps).
            power: the poly exponent (official 0.9).
            min_lr: the floor every group decays to (official 1e-4).
            last_epoch: the last iteration done, for resuming without a state dict.
        """
        if max_iters <= 0:
            raise ValueError(f"max_iters must be positive, got {max_iters}")
        self.max_iters = max_iters
        self.power = power
        self.min_lr = min_lr
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [poly_lr(base, self.last_epoch, self.max_iters, self.power, self.min_lr) for base in self.base_lrs]
