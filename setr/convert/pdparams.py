"""Reading PaddlePaddle ``.pdparams`` files without paddle, executing nothing from them.

A ``.pdparams`` written by ``paddle.save(model.state_dict())`` is a plain pickle of
``{structured name: numpy array}`` plus a ``'StructuredToParameterName@@'`` table of names. It is
read here with an unpickler that can build numpy arrays and nothing else: a file that asks for any
other callable is refused before anything in it runs.
"""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._common import ConversionError
from ._numpy import materialise, numpy_data_globals

__all__ = ["read_pdparams"]

_NAME_TABLE = "StructuredToParameterName@@"
_BIG_PARAMS = "UnpackBigParamInfor@@"


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for array bytes: latin-1 text to bytes, and
    nothing else (no codec lookup by a name the file chose)."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refusing to load _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    return {
        **numpy_data_globals(),
        # protocol 2 pickles store raw array bytes as latin-1 text re-encoded by _codecs.encode
        ("_codecs", "encode"): _latin1_encode,
        # paddle 2.1 pickles a tensor as tuple((name, array))
        ("builtins", "tuple"): tuple,
        ("collections", "OrderedDict"): OrderedDict,
    }


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Builds numpy arrays, numbers, strings and plain containers; refuses every other global."""

    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing a persistent reference (not a .pdparams pickle)")


def _join_big_params(obj: dict[str, Any]) -> dict[str, Any]:
    """Re-assemble arrays that paddle split into ``key@@.i`` slices (pickle protocol 2/3)."""
    info = obj.pop(_BIG_PARAMS, None)
    if not info:
        return obj
    for key, entry in info.items():
        parts = [obj.pop(part) for part in entry["slices"]]
        obj[key] = np.concatenate([np.asarray(p).reshape(-1) for p in parts]).reshape(entry["OriginShape"])
    return obj


def read_pdparams(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a PaddlePaddle ``.pdparams`` file into torch tensors, executing nothing from it.

    Raises:
        FileNotFoundError: the file does not exist.
        ConversionError: not a pickle of numpy arrays (truncated, corrupt, or asks for code).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with path.open("rb") as file:
            obj = _ArraysOnlyUnpickler(file, encoding="latin1").load()
    except pickle.UnpicklingError as error:
        if str(error).startswith("refusing"):
            raise ConversionError(
                f"{path}: refused to load: {error}. A .pdparams holds only numpy arrays; this file asks "
                "for code to run while unpickling, so setr will not open it. Re-save the weights with "
                "paddle.save(model.state_dict(), ...) in a trusted environment."
            ) from None
        raise ConversionError(f"{path}: not a readable .pdparams pickle ({error}); is it truncated?") from None
    except Exception as error:  # a damaged pickle fails anywhere, with any type
        raise ConversionError(
            f"{path}: cannot read the file ({type(error).__name__}: {error}); is it truncated or corrupt?"
        ) from None
    if not isinstance(obj, Mapping):
        raise ConversionError(f"{path}: expected a dict of arrays (paddle.save of a state_dict), got {type(obj)}")
    try:
        obj = _join_big_params({key: materialise(value) for key, value in obj.items()})
    except pickle.UnpicklingError as error:
        raise ConversionError(f"{path}: refused to load: {error}") from None
    except (KeyError, TypeError, ValueError, AttributeError, MemoryError) as error:
        raise ConversionError(
            f"{path}: its split arrays do not fit together ({type(error).__name__}: {error})"
        ) from None
    obj.pop(_NAME_TABLE, None)
    tensors: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], np.ndarray):
            value = value[1]  # paddle 2.1: (parameter name, array)
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
            raise ConversionError(f"{path}: entry {key!r} is not a numeric array ({type(value).__name__})")
        tensors[str(key)] = torch.from_numpy(np.ascontiguousarray(value).copy())
    if not tensors:
        raise ConversionError(f"{path}: the file holds no arrays")
    return tensors
