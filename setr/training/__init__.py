"""Training building blocks: the official optimiser, poly schedule, loss, recipes, sampling,
checkpoints, validation and the run log (``examples/train.py`` is a recipe over these)."""

from ..distributed import DistributedContext, cleanup_distributed, init_distributed, rank_digests, share_cpu_threads
from .checkpoint import (
    capture_rng_state,
    load_training_checkpoint,
    restore_rng_state,
    restore_training_state,
    save_pretrained_weights,
    save_training_checkpoint,
    seed_everything,
    training_state,
    unwrap_model,
)
from .data import AugmentedDataset, TrainSampler, sample_pair
from .log import RunLog
from .loss import SETRLoss
from .optim import build_optimizer, param_groups
from .recipe import Recipe, get_recipe, resolve
from .rundir import RUN_FILES, prepare_run_dir
from .schedule import PolyLR, poly_lr
from .setup import mixed_precision, train_loader, wrap_for_training
from .step import train_step
from .validate import save_predictions, validate

__all__ = [
    "RUN_FILES", "AugmentedDataset", "DistributedContext", "PolyLR", "Recipe", "RunLog", "SETRLoss",
    "TrainSampler", "build_optimizer", "capture_rng_state", "cleanup_distributed", "get_recipe",
    "init_distributed", "load_training_checkpoint", "resolve", "share_cpu_threads", "param_groups", "poly_lr", "prepare_run_dir", "rank_digests",
    "restore_rng_state", "restore_training_state", "sample_pair", "save_predictions", "save_pretrained_weights",
    "save_training_checkpoint", "seed_everything", "train_loader", "train_step", "mixed_precision", "wrap_for_training", "training_state", "unwrap_model", "validate",
]  # fmt: skip
