"""``convert_checkpoint``: any supported checkpoint of a zoo network -> a ``save_pretrained`` folder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors import safe_open

from ..files import check_new_files, check_output_dir
from ..models import SETR
from ..models.loading import CONFIG_FILE, WEIGHTS_FILE
from .create import create_model
from .hub import sha256_of

__all__ = ["convert_checkpoint"]


def convert_checkpoint(
    model_name: str,
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    push_to_hub: str | None = None,
    force: bool = False,
    **overrides: Any,
) -> SETR:
    """Convert any supported checkpoint of ``model_name`` into a ``save_pretrained`` folder.

    Args:
        model_name: zoo name (``name`` or ``name.tag``) describing the checkpoint's network.
        checkpoint: official, mmsegmentation, PaddleViT or setr checkpoint file.
        out_dir: destination folder (``config.json``, ``model.safetensors``, ``README.md``).
        push_to_hub: also upload the folder to this Hub repository.
        force: replace the weights and config of a model already in ``out_dir`` (refused otherwise).
        **overrides: constructor overrides (for checkpoints of non-standard sizes).

    Raises:
        setr.files.OutputExistsError: ``out_dir`` holds a model and ``force`` is not set.
        PermissionError, NotADirectoryError: ``out_dir`` cannot be written (checked before the
            checkpoint is read).
    """
    check_output_dir(out_dir, "out_dir")
    check_new_files([Path(out_dir) / CONFIG_FILE, Path(out_dir) / WEIGHTS_FILE], force, "force=True (--force)")
    aux = overrides.pop("aux_heads", _has_aux_heads(checkpoint))
    model = create_model(model_name, checkpoint_path=checkpoint, aux_heads=aux, **overrides)
    loaded = dict(model.info.loaded_from or {})
    loaded["sha256"] = sha256_of(loaded["checkpoint"])  # the file read (a folder's model.safetensors)
    model.info = model.info.replace(loaded_from=loaded, hub_repo=push_to_hub or model.info.hub_repo)
    model.save_pretrained(out_dir)
    if push_to_hub:
        model.push_to_hub(push_to_hub)
    return model


def _has_aux_heads(checkpoint: str | os.PathLike) -> bool:
    """Whether a checkpoint holds auxiliary heads (kept by a conversion): a ``save_pretrained``
    folder or our safetensors says so; every released official, mmseg and PaddleViT checkpoint has them."""
    path = Path(checkpoint)
    if (path / CONFIG_FILE).is_file():
        try:
            return bool(json.loads((path / CONFIG_FILE).read_text()).get("aux_indices"))
        except (OSError, ValueError):
            return True  # let the loader report the damaged folder
    if path.suffix == ".safetensors" and path.is_file():
        try:
            with safe_open(str(path), "pt") as handle:
                return any(key.startswith("aux_heads.") for key in handle.keys())  # noqa: SIM118
        except Exception:  # damaged: the loader reports it
            return True
    return True
