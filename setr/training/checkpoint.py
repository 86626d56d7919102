"""Training checkpoints written atomically, the random state they carry, and the final weights."""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..convert import ConversionError, load_checkpoint
from ..files import atomic_write
from ..models import SETRConfig

__all__ = [
    "capture_rng_state",
    "load_training_checkpoint",
    "restore_training_state",
    "training_state",
    "restore_rng_state",
    "save_pretrained_weights",
    "save_training_checkpoint",
    "seed_everything",
    "unwrap_model",
]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside ``DistributedDataParallel`` and/or ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators (CPU and CUDA) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def capture_rng_state() -> dict[str, Any]:
    """The state of every random generator the training touches: python, numpy, torch CPU and CUDA.

    Stored as tensors and plain Python values, so the checkpoint loads with ``weights_only=True``.
    """
    np_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back what :func:`capture_rng_state` returned."""
    random.setstate(_as_tuple(state["python"]))
    np_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def save_training_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` with ``torch.save`` atomically: to a temporary file in the same folder, flushed
    to disk, then renamed over ``path``. A run killed mid-write leaves the previous checkpoint intact.

    Raises:
        setr.files.WriteFailed: the disk has no room for the tensors (refused before writing) or
            fills up, or the folder is read-only; the previous checkpoint is whole.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, size=_tensor_bytes(state)) as handle:
        torch.save(state, handle)
    return path


def _tensor_bytes(value: Any, seen: set[int] | None = None) -> int:
    """The bytes of the tensors in ``value`` (nested dicts, lists, tuples), each storage once:
    at most what ``torch.save`` writes."""
    seen = set() if seen is None else seen
    if isinstance(value, torch.Tensor):
        storage = value.untyped_storage()
        key = storage.data_ptr()
        if key in seen or value.device.type == "meta":
            return 0
        seen.add(key)
        return storage.nbytes()
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v, seen) for v in value)
    return 0


def load_training_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_training_checkpoint` (``weights_only=True``: no code runs).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        RuntimeError: the file is not a readable training checkpoint (truncated, corrupt or another format).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no training checkpoint at {path}; pass the last.pt of an earlier run's output folder")
    try:
        with warnings.catch_warnings():  # torch's note on a pickle protocol it reads anyway: noise to a user
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise RuntimeError(
            f"{path} is not a readable training checkpoint ({type(error).__name__}: {error}); it may be truncated "
            "or corrupt: resume from another checkpoint or start afresh"
        ) from error
    missing = {"model", "optimizer", "scheduler", "iteration", "rng"} - set(state if isinstance(state, dict) else ())
    if missing:
        raise RuntimeError(f"{path} is not a setr training checkpoint (missing {', '.join(sorted(missing))})")
    return state


def save_pretrained_weights(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Save the final weights in the ``save_pretrained`` layout (``config.json`` + ``model.safetensors``
    + model card), through ``model.save_pretrained``. The weights are the run's own from now on:
    ``model.info`` forgets the release it started from (its reported mIoU, its recipe), so that the
    card and ``config.json`` do not claim them."""
    model = unwrap_model(model)
    directory = Path(directory)
    if getattr(model, "info", None) is not None:
        model.info = model.info.replace(release=None)
    model.save_pretrained(directory)  # makes the folder (setr.files.atomic_staging)
    return directory


def _config_dict(model: nn.Module) -> dict[str, Any] | None:
    """A SETR's config as a plain dict (what a checkpoint stores), or None for another model."""
    config = getattr(model, "config", None)
    return config.to_dict() if isinstance(config, SETRConfig) else None


def training_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    iteration: int,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The training checkpoint's content: everything :func:`restore_training_state` needs to continue
    a run exactly (weights, their config, optimiser, schedule, loss scaler, random generators)."""
    model = unwrap_model(model)
    return {
        "model": model.state_dict(), "model_config": _config_dict(model),
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
        "iteration": iteration, "rng": capture_rng_state(), "args": dict(extra or {}),
    }  # fmt: skip


def restore_training_state(
    path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any
) -> int:
    """Load a training checkpoint into the objects (the weights strictly, through the one loader);
    returns the iterations already done.

    Raises:
        FileNotFoundError, RuntimeError: see :func:`load_training_checkpoint`.
        ValueError: the checkpoint was made for a model with another configuration.
    """
    state = load_training_checkpoint(path)
    model = unwrap_model(model)
    saved_config, config = state.get("model_config"), _config_dict(model)
    if saved_config is not None and config is not None and saved_config != config:
        changed = sorted(k for k in {*saved_config, *config} if saved_config.get(k) != config.get(k))
        raise ValueError(
            f"{path} was made for another model (differs in {', '.join(changed) or 'its keys'}); "
            "resume with the same model options as the run that wrote it"
        )
    try:
        load_checkpoint(model, state["model"], "setr")
    except ConversionError as error:
        raise ValueError(f"{path}: {error}") from None
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    restore_rng_state(state["rng"])
    return int(state["iteration"])
