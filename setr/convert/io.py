"""Reading checkpoint files safely: nothing in a file is ever executed."""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._common import ConversionError

__all__ = ["numpy_data_globals", "read_checkpoint", "unwrap_state_dict"]


def numpy_data_globals() -> dict[tuple[str, str], Any]:
    """``(module, name) -> object`` for the numpy callables that rebuild arrays, scalars and dtypes.

    They only turn bytes into numbers. Pickles name them ``numpy.core.multiarray`` (numpy 1) or
    ``numpy._core.multiarray`` (numpy 2); both names are listed.
    """
    try:
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    for kind in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.float16, np.float32, np.float64):
        dtype_class = type(np.dtype(kind))
        allowed[(dtype_class.__module__, dtype_class.__qualname__)] = dtype_class
    return allowed


def _torch_safe_globals() -> list[Any]:
    # mmcv checkpoints may carry numpy scalars in their 'meta' (seed, best score): plain data.
    return [(obj, f"{module}.{name}") for (module, name), obj in numpy_data_globals().items()]


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
            f"{path}: cannot read the file ({detail.group(1).strip() if detail else 'bad pickle'}); "
            "is it truncated, corrupt, or not a PyTorch checkpoint?"
        ) from None
    except Exception as error:  # a damaged file fails anywhere inside torch.load, with any type
        raise ConversionError(
            f"{path}: cannot read the file ({type(error).__name__}: {error}); is it truncated, corrupt, "
            "or not a PyTorch checkpoint?"
        ) from None


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into tensors, never executing anything from it.

    ``.safetensors``; ``.pdparams`` (PaddlePaddle, see :func:`setr.convert.paddle.read_pdparams`);
    anything else with ``torch.load(weights_only=True)`` (``.pth``/``.pt``/``.bin``).

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
            raise ConversionError(f"{path}: not a readable safetensors file ({error}); is it truncated?") from None
    if path.suffix == ".pdparams":
        from .paddle import read_pdparams

        return read_pdparams(path)
    return unwrap_state_dict(_torch_load(path), path)
