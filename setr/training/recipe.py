"""The official training recipe of each zoo model (``official_setr.md`` sections 6 and 7)."""

from __future__ import annotations

from dataclasses import dataclass

from .._registry import get_pretrained_cfg
from ..models.factory import DATASET_MODELS

__all__ = ["Recipe", "get_recipe"]


@dataclass(frozen=True)
class Recipe:
    """Hyper-parameters of one training run; the defaults are the parts every official config shares.

    Attributes:
        lr: base learning rate (the heads train at ``lr * head_lr_mult``).
        iters: optimiser steps.
        batch_size: global batch per optimiser step (official: ``samples_per_gpu x 8`` GPUs).
        crop: training crop side.
        scale: the dataset scale ``(long, short)`` the random resize multiplies.
        ratio_range: random resize ratios.
        cat_max_ratio: the random crop's largest allowed class share.
        momentum: SGD momentum.
        weight_decay: SGD weight decay (the SETR configs set 0).
        head_lr_mult: learning-rate multiplier of the decode and auxiliary heads.
        power: poly schedule exponent.
        min_lr: poly schedule floor.
        aux_weight: loss weight of each auxiliary head.
        eval_interval: iterations between evaluations and checkpoints; 0 means a tenth of the run
            (the official interval).
    """

    lr: float
    iters: int
    batch_size: int
    crop: int
    scale: tuple[int, int]
    ratio_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float = 0.75
    momentum: float = 0.9
    weight_decay: float = 0.0
    head_lr_mult: float = 10.0
    power: float = 0.9
    min_lr: float = 1e-4
    aux_weight: float = 0.4
    eval_interval: int = 0

    @property
    def eval_every(self) -> int:
        """The evaluation and checkpoint interval in iterations."""
        return self.eval_interval or max(self.iters // 10, 1)


# Base lr per (head, dataset), and each dataset's crop and train-time scale (long, short).
_BASE_LR = {
    ("naive", "cityscapes"): 0.01, ("pup", "cityscapes"): 0.01, ("mla", "cityscapes"): 0.002,
    ("naive", "ade20k"): 0.01, ("pup", "ade20k"): 0.001, ("mla", "ade20k"): 0.001,
    ("naive", "pcontext"): 0.01, ("pup", "pcontext"): 0.001, ("mla", "pcontext"): 0.001,
}  # fmt: skip
_DATA = {"cityscapes": (768, (2049, 1025)), "ade20k": (512, (2048, 512)), "pcontext": (480, (520, 520))}


def get_recipe(name: str) -> Recipe:
    """The official recipe of a zoo model, e.g. ``"setr_pup_vitl_cityscapes"`` or ``"...ade20k.official_160k"``.

    The iterations and batch come from the released checkpoint's row of the zoo (the default tag
    unless one is named), the base lr, crop and scale from the official config of that head and
    dataset.

    Raises:
        KeyError: ``name`` is not a dataset zoo name.
    """
    base = name.split(".", 1)[0]
    if base not in DATASET_MODELS:
        raise KeyError(
            f"{name!r} has no official recipe; use a dataset zoo name ({', '.join(sorted(DATASET_MODELS))}) "
            "or give the hyper-parameters yourself"
        )
    arch, dataset = DATASET_MODELS[base]
    head = arch.split("_")[1]
    crop, scale = _DATA[dataset]
    resolved = get_pretrained_cfg(name)
    iters, batch = (resolved[2].iters, resolved[2].batch_size) if resolved else (80_000, 8)
    return Recipe(lr=_BASE_LR[head, dataset], iters=iters, batch_size=batch, crop=crop, scale=scale)
