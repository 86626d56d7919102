"""Reading checkpoint files safely: nothing in a file is ever executed."""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..dtypes import cast_floating
from ..files import atomic_target
from ._common import ConversionError
from ._numpy import ArraySpec, numpy_data_globals
from .pdparams import read_pdparams
from .streaming import read_safetensors_as

__all__ = ["read_checkpoint", "unwrap_state_dict", "write_safetensors"]


def _torch_safe_globals() -> list[Any]:
    # mmcv checkpoints may carry numpy scalars and small arrays in their 'meta' (seed, best score):
    # plain data, rebuilt by checked stand-ins (setr.convert._numpy), never by numpy from the file.
    pairs = [(obj, f"{module}.{name}") for (module, name), obj in numpy_data_globals().items()]
    return [*pairs, (ArraySpec, "setr.convert._numpy.ArraySpec")]


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


def _torch_load(path: Path) -> object:
    """``torch.load(weights_only=True)`` with numpy data admitted, errors turned into advice."""
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols it may not support
            warnings.simplefilter("ignore", UserWarning)
            if safe_globals is None:  # pragma: no cover - torch < 2.5
                return torch.load(path, map_location="cpu", weights_only=True)
            with safe_globals(_torch_safe_globals()):
                return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if found:
            raise ConversionError(
                f"{path}: refused to load: unpickling it would call {found.group(1)}, and setr never runs "
                "code from a checkpoint (torch.load(weights_only=True)). Re-save its weights alone in a "
                "trusted environment: torch.save(ckpt['state_dict'], 'clean.pth')."
            ) from None
        detail = re.search(r"WeightsUnpickler error:\s*(.+)", str(error))
        raise ConversionError(
            f"{path}: cannot read the file ({detail.group(1).strip() if detail else 'bad pickle'}); is it truncated, "
            "corrupt, or not a PyTorch checkpoint? (Or its pickle asks for instructions that plain weights never "
            "use: setr never runs code from a checkpoint.)"
        ) from None
    except Exception as error:  # a damaged file fails anywhere inside torch.load, with any type
        raise ConversionError(
            f"{path}: cannot read the file ({type(error).__name__}: {error}); is it truncated, corrupt, "
            "or not a PyTorch checkpoint?"
        ) from None


def read_checkpoint(path: str | os.PathLike, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into tensors, never executing anything from it.

    ``.safetensors``; ``.pdparams`` (PaddlePaddle, see :func:`setr.convert.paddle.read_pdparams`);
    anything else with ``torch.load(weights_only=True)`` (``.pth``/``.pt``/``.bin``).

    Args:
        path: the file.
        dtype: convert floating-point tensors to this dtype. A ``.safetensors`` file is then read
            one tensor at a time (:func:`setr.convert.streaming.read_safetensors_as`), so no copy
            of the file's own precision is ever held whole; other formats are read, then converted.

    Raises:
        FileNotFoundError: the file does not exist.
        ConversionError: the file is truncated or corrupt, or needs code execution to load.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors" and dtype is not None:
        return read_safetensors_as(path, dtype)
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as error:  # SafetensorError, OSError, ValueError, ... on a damaged file
            raise ConversionError(f"{path}: not a readable safetensors file ({error}); is it truncated?") from None
    state = read_pdparams(path) if path.suffix == ".pdparams" else unwrap_state_dict(_torch_load(path), path)
    if dtype is not None:
        state = cast_floating(state, dtype)
    return state


def write_safetensors(
    state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> Path:
    """Write tensors to a ``.safetensors`` file atomically (:func:`setr.files.atomic_target`): an
    interrupted write leaves any old file whole.

    Tensors are detached, made contiguous and copied to the CPU first; the metadata always says
    ``format: pt``.
    """
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    with atomic_target(path, size=sum(t.numel() * t.element_size() for t in tensors.values())) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", **(metadata or {})})
    return Path(path)
