"""Training building blocks: the official optimiser, poly schedule, loss, recipes, sampling, checkpoints."""

from .checkpoint import (
    capture_rng_state,
    load_training_checkpoint,
    restore_rng_state,
    save_pretrained_weights,
    save_training_checkpoint,
    unwrap_model,
)
from .data import AugmentedDataset, TrainSampler, sample_pair
from .distributed import DistributedContext, cleanup_distributed, init_distributed
from .loss import SETRLoss
from .optim import HEAD_PREFIXES, build_optimizer, param_groups
from .recipe import Recipe, get_recipe
from .schedule import PolyLR, poly_lr

__all__ = [
    "HEAD_PREFIXES",
    "AugmentedDataset",
    "DistributedContext",
    "PolyLR",
    "Recipe",
    "SETRLoss",
    "TrainSampler",
    "build_optimizer",
    "capture_rng_state",
    "cleanup_distributed",
    "get_recipe",
    "init_distributed",
    "load_training_checkpoint",
    "param_groups",
    "poly_lr",
    "restore_rng_state",
    "save_pretrained_weights",
    "sample_pair",
    "save_training_checkpoint",
    "unwrap_model",
]
