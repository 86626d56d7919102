"""Stand-ins for the numpy callables a pickle names to rebuild arrays, scalars and dtypes.

A pickled numpy array is ``_reconstruct(ndarray, ...)`` followed by ``BUILD`` with its state
(shape, dtype, raw bytes), and a dtype is ``dtype(name)`` followed by ``BUILD``. Handing those
names to numpy itself lets a crafted file drive numpy's internals with states it never wrote (a
fuzz run produced ``SystemError`` and "Internal error" from numpy this way). The stand-ins here
take the same calls, check every value (plain numeric dtypes, a shape of non-negative integers,
exactly as many bytes as the shape needs) and only then build the array with ``np.frombuffer``.
"""

from __future__ import annotations

import math
import pickle
from typing import Any

import numpy as np

__all__ = ["ArraySpec", "materialise", "numpy_data_globals"]

_NUMERIC_KINDS = "biuf"


def _refuse(what: str) -> pickle.UnpicklingError:
    return pickle.UnpicklingError(f"refusing a numpy {what} that numpy's own pickles never hold")


class DtypeSpec:
    """What ``numpy.dtype(name, align, copy)`` + ``BUILD`` describe: a plain numeric dtype."""

    def __init__(self, name: object, align: object = False, copy: object = False) -> None:
        if not isinstance(name, str) or not isinstance(align, bool) or not isinstance(copy, bool):
            raise _refuse("dtype call")
        try:
            dtype = np.dtype(name)
        except TypeError as error:
            raise _refuse(f"dtype {name!r}") from error
        if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise _refuse(f"dtype {name!r} (not a plain number type)")
        self.dtype = dtype

    def __setstate__(self, state: object) -> None:
        # (version, byte order, subarray, names, fields, item size, alignment, flags[, metadata])
        if not isinstance(state, tuple) or len(state) not in (8, 9):
            raise _refuse("dtype state")
        _, order, subarray, names, fields, *_rest = state
        if order not in ("<", ">", "|", "=") or subarray is not None or names is not None or fields is not None:
            raise _refuse("dtype state")
        if order in "<>" and self.dtype.itemsize > 1:
            self.dtype = self.dtype.newbyteorder(order)


class ArraySpec:
    """What ``_reconstruct(ndarray, ...)`` + ``BUILD`` describe; ``array`` once the state is checked."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: object) -> None:
        # (version, shape, dtype, is_fortran, raw bytes)
        if not isinstance(state, tuple) or len(state) != 5:
            raise _refuse("array state")
        _, shape, dtype, fortran, raw = state
        if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise _refuse("array shape")
        if not isinstance(dtype, DtypeSpec) or not isinstance(fortran, bool) or not isinstance(raw, bytes | str):
            raise _refuse("array state")
        data = raw.encode("latin1") if isinstance(raw, str) else raw
        if len(data) != math.prod(shape) * dtype.dtype.itemsize:
            raise pickle.UnpicklingError(
                f"a numpy array declares shape {shape} of {dtype.dtype} but holds {len(data)} bytes"
            )
        array = np.frombuffer(data, dtype=dtype.dtype)
        self.array = array.reshape(shape, order="F" if fortran else "C")


class _NdarrayClass:
    """Stands for ``numpy.ndarray`` as the first argument of ``_reconstruct``."""


def _reconstruct(cls: object, shape: object, typecode: object) -> ArraySpec:
    if cls is not _NdarrayClass or shape != (0,) or typecode not in (b"b", "b"):
        raise _refuse("array reconstruction")
    return ArraySpec()


def _scalar(dtype: object, raw: object) -> Any:
    if not isinstance(dtype, DtypeSpec) or not isinstance(raw, bytes | str):
        raise _refuse("scalar")
    data = raw.encode("latin1") if isinstance(raw, str) else raw
    if len(data) != dtype.dtype.itemsize:
        raise _refuse("scalar")
    return np.frombuffer(data, dtype=dtype.dtype)[0]


def numpy_data_globals() -> dict[tuple[str, str], Any]:
    """``(module, name) -> stand-in`` for the numpy callables that rebuild arrays, scalars and dtypes.

    Pickles name them ``numpy.core.multiarray`` (numpy 1) or ``numpy._core.multiarray`` (numpy 2);
    both are listed. Unpickled arrays come out as :class:`ArraySpec` (see :func:`materialise`).
    """
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): _NdarrayClass, ("numpy", "dtype"): DtypeSpec}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = _reconstruct
        allowed[(module, "scalar")] = _scalar
    return allowed


def materialise(value: Any) -> Any:
    """``value`` with every :class:`ArraySpec` (also inside tuples and lists) replaced by its array."""
    if isinstance(value, ArraySpec):
        if value.array is None:
            raise pickle.UnpicklingError("a numpy array without its data")
        return value.array
    if isinstance(value, tuple | list):
        return type(value)(materialise(v) for v in value)
    return value
