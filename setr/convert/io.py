"""Reading checkpoint files safely: nothing in a file is ever executed."""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from ._common import ConversionError

__all__ = ["read_checkpoint", "unwrap_state_dict"]


def unwrap_state_dict(obj: object, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a loaded checkpoint: ``obj['state_dict']``, ``obj['model']`` or ``obj`` itself,
    with a DDP ``module.`` prefix removed."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "module"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ConversionError(f"{path}: no state dict found (expected a dict of tensors, or one under 'state_dict')")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ConversionError(f"{path}: the checkpoint holds no tensors")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a ``.pth``/``.pt``/``.bin`` (``torch.load(weights_only=True)``) or ``.safetensors`` file.

    Raises:
        FileNotFoundError: the file does not exist.
        ConversionError: the file is truncated or corrupt, or needs code execution to load.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise ConversionError(f"{path}: not a readable safetensors file ({error}); is it truncated?") from error
    if path.suffix == ".pdparams":
        from .paddle import read_pdparams

        return read_pdparams(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ConversionError(
            f"{path}: refused to load: the file needs more than tensors and plain containers to "
            f"unpickle ({str(error).splitlines()[0]}). setr never executes code from a checkpoint; "
            "re-save its state_dict alone with torch.save(ckpt['state_dict'], 'clean.pth') in a "
            "trusted environment."
        ) from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as error:
        raise ConversionError(f"{path}: cannot read the file ({error}); is it truncated or corrupt?") from error
    return unwrap_state_dict(obj, path)
