"""The numpy callables a safe unpickler may call: they only turn bytes into arrays, scalars and dtypes."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["numpy_data_globals"]


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
