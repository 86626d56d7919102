"""``convert_checkpoint``: any supported checkpoint of a zoo network -> a ``save_pretrained`` folder."""

from __future__ import annotations

import os
from typing import Any

from ..models import SETR
from .create import create_model
from .hub import sha256_of

__all__ = ["convert_checkpoint"]


def convert_checkpoint(
    model_name: str,
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    push_to_hub: str | None = None,
    **overrides: Any,
) -> SETR:
    """Convert any supported checkpoint of ``model_name`` into a ``save_pretrained`` folder.

    Args:
        model_name: zoo name (``name`` or ``name.tag``) describing the checkpoint's network.
        checkpoint: official, mmsegmentation, PaddleViT or setr checkpoint file.
        out_dir: destination folder (``config.json``, ``model.safetensors``, ``README.md``).
        push_to_hub: also upload the folder to this Hub repository.
        **overrides: constructor overrides (for checkpoints of non-standard sizes).
    """
    model = create_model(model_name, checkpoint_path=checkpoint, **overrides)
    loaded = dict(model.info.loaded_from or {})
    loaded["sha256"] = sha256_of(loaded["checkpoint"])  # the file read (a folder's model.safetensors)
    model.info = model.info.replace(loaded_from=loaded, hub_repo=push_to_hub or model.info.hub_repo)
    model.save_pretrained(out_dir)
    if push_to_hub:
        model.push_to_hub(push_to_hub)
    return model
