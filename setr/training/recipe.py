"""The official training recipe of each zoo model (``official_setr.md`` sections 6 and 7)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..data.meta import DATASETS
from ..zoo.registry import lookup
from ..zoo.table import ZOO

__all__ = ["Recipe", "get_recipe", "resolve"]


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


def get_recipe(name: str) -> Recipe:
    """The official recipe of a zoo model, e.g. ``"setr_pup_vitl_cityscapes"`` or ``"...ade20k.official_160k"``.

    Every fact comes from the zoo table: iterations and batch from the released checkpoint's row
    (the default tag unless one is named), the base lr from the zoo entry, the crop and the
    random-resize scale from the dataset's protocol (the official configs train and test at the
    same ``img_scale``).

    Raises:
        KeyError: ``name`` is not a dataset zoo name.
    """
    base = name.split(".", 1)[0]
    dataset_models = sorted(n for n, e in ZOO.items() if e.dataset is not None)
    if base not in dataset_models:
        raise KeyError(
            f"{name!r} has no official recipe; use a dataset zoo name ({', '.join(dataset_models)}) "
            "or give the hyper-parameters yourself"
        )
    entry, _, release = lookup(name)
    protocol = DATASETS[entry.dataset].protocol
    iters, batch = (release.iters, release.batch_size) if release else (80_000, 8)
    return Recipe(lr=entry.base_lr, iters=iters, batch_size=batch, crop=protocol.crop, scale=protocol.test_scale)


def resolve(base: Recipe | str | None, **changes: object) -> Recipe:
    """A recipe with ``changes`` applied: ``base`` itself, or the official recipe of the zoo name ``base``.

    A name without an official recipe (or ``None``) needs the changes to give at least ``lr``,
    ``iters``, ``batch_size``, ``crop`` and ``scale``.

    Raises:
        ValueError: a name without an official recipe and some of those missing (the message names
            them as command-line flags).
    """
    changes = {k: (tuple(v) if k == "scale" else v) for k, v in changes.items() if v is not None}
    if isinstance(base, Recipe):
        return replace(base, **changes)
    try:
        return replace(get_recipe(base or ""), **changes)
    except KeyError:
        pass
    required = ("lr", "iters", "batch_size", "crop", "scale")
    missing = [f"--{k.replace('_', '-')}" for k in required if k not in changes]
    if missing:
        raise ValueError(f"--model {base} has no official recipe: give {' '.join(missing)}")
    return Recipe(**changes)
