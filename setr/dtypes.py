"""The one vocabulary for precisions and dtypes: ``fp32``, ``bf16``, ``fp16``, ``int8``, ``auto``.

Every option that names a precision (``precision=``, ``dtype=``, ``--precision``, training's
``amp``) is read by :func:`parse_precision` / :func:`as_dtype`, which also take today's aliases
(``float32``, ``float``, ``bfloat16``, ``float16``, ``half``, a ``torch.`` prefix, a
``torch.dtype``). Each user states the subset it accepts; an unknown word is refused in one line
naming that subset. ``auto`` becomes ``bf16`` where the hardware computes bf16 natively, as its
feature flags report (:func:`device_has_native_bf16`), else ``fp32``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

__all__ = [
    "DTYPES", "WORDS", "as_dtype", "auto_precision", "cast_floating", "cpu_features", "cpu_has_native_bf16",
    "device_has_native_bf16", "dtype_word", "parse_precision", "precision_dtype", "precision_word",
]  # fmt: skip

WORDS = ("fp32", "bf16", "fp16", "int8", "auto")
"""Every precision word; each option accepts a subset of them."""

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
"""The words that are one floating dtype (``int8`` quantizes some layers; ``auto`` depends on the device)."""

_FP64 = {"fp64": torch.float64, "float64": torch.float64, "double": torch.float64}  # as_dtype only: checks in double
_ALIASES = {"float32": "fp32", "float": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16"}

Cast = TypeVar("Cast", torch.Tensor, Mapping, nn.Module)


def _key(value: str) -> str:
    return value.strip().lower().removeprefix("torch.")


def precision_word(value: str | torch.dtype) -> str:
    """The word for ``value``: a word, an alias (``"bfloat16"``, ``"torch.half"``) or a ``torch.dtype``.

    Raises:
        ValueError: not one of them (the message lists the words).
    """
    if isinstance(value, torch.dtype):
        word = dtype_word(value)
    elif isinstance(value, str):
        key = _key(value)
        word = key if key in WORDS else _ALIASES.get(key)
    else:
        word = None
    if word is None:
        raise ValueError(f"precision={value!r}: choose one of {', '.join(WORDS)}")
    return word


def parse_precision(value: str | torch.dtype, choices: Sequence[str] = WORDS, what: str = "precision") -> str:
    """The word for ``value`` (see :func:`precision_word`) when it is one of ``choices``.

    ``choices`` may hold a word of the caller's own besides :data:`WORDS` (training's ``"none"``).

    Raises:
        ValueError: ``{what}={value!r}: choose one of {choices}``.
    """
    word = _key(value) if isinstance(value, str) and _key(value) in choices else None
    if word is None:
        try:
            word = precision_word(value)
        except ValueError:
            word = None
    if word not in choices:
        raise ValueError(f"{what}={value!r}: choose one of {', '.join(choices)}")
    return word


def dtype_word(dtype: torch.dtype) -> str | None:
    """``"fp32"``, ``"bf16"`` or ``"fp16"`` for that ``torch.dtype``; ``None`` for any other dtype."""
    return next((word for word, known in DTYPES.items() if known == dtype), None)


def precision_dtype(precision: str) -> torch.dtype:
    """The floating dtype of a model's tensors and inputs in ``precision``: ``int8`` keeps
    everything but the quantized Linear weights in float32.

    Raises:
        ValueError: ``auto`` (resolve it first: :func:`auto_precision`) or an unknown word.
    """
    word = precision_word(precision)
    if word == "auto":
        raise ValueError("precision='auto' has no dtype of its own: resolve it for the device first (auto_precision)")
    return DTYPES.get(word, torch.float32)


def as_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """A floating-point ``torch.dtype`` from a dtype or its name (``"bf16"``, ``"float32"``, ...);
    ``None`` stays ``None``.

    Raises:
        TypeError: not a floating dtype nor one of its names (the message lists them).
    """
    if dtype is None or (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        return dtype
    if isinstance(dtype, str) and _key(dtype) in _FP64:
        return _FP64[_key(dtype)]
    try:
        word = parse_precision(dtype, tuple(DTYPES), "dtype")
    except ValueError:
        names = ", ".join([*DTYPES, *_ALIASES, *_FP64])
        raise TypeError(f"dtype={dtype!r}: expected a floating-point torch.dtype or one of {names}") from None
    return DTYPES[word]


def cast_floating(value: Cast, dtype: torch.dtype | None) -> Cast:
    """``value`` with its floating-point tensors in ``dtype``; integer and bool tensors are kept.

    - a tensor: the cast tensor (itself when it is not floating or already ``dtype``);
    - a state dict: a new dict;
    - a module: the same module, each floating parameter and buffer replaced by a new tensor
      (``Module.to`` would change the tensors in place, and with them any model sharing them).

    ``dtype=None`` changes nothing.
    """
    if dtype is None:
        return value
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, nn.Module):
        for module in value.modules():
            for name, param in module._parameters.items():
                if param is not None and param.is_floating_point() and param.dtype != dtype:
                    module._parameters[name] = nn.Parameter(param.detach().to(dtype), param.requires_grad)
            for name, buffer in module._buffers.items():
                if buffer is not None and buffer.is_floating_point() and buffer.dtype != dtype:
                    module._buffers[name] = buffer.to(dtype)
        return value
    return {key: cast_floating(tensor, dtype) for key, tensor in value.items()}


# ---------------------------------------------------------------------------- what `auto` means
@functools.cache
def cpu_features() -> frozenset[str]:
    """The CPU's feature flags (``avx512_bf16``, ``avx512_vnni``, ...) as the kernel reports them
    in ``/proc/cpuinfo``; empty where that file does not exist."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products natively: x86 ``AVX512_BF16`` or AMX tiles
    (as PyTorch's own probes report them), or an Arm core with the ``bf16`` extension."""
    probes = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    if any(probe is not None and probe() for probe in probes):
        return True
    return bool(cpu_features() & {"avx512_bf16", "amx_bf16", "bf16"})


def device_has_native_bf16(device: torch.device | str) -> bool:
    """Native bf16 on ``device``: :func:`cpu_has_native_bf16` on a CPU, compute capability 8.0 or
    newer on CUDA (emulation does not count)."""
    device = torch.device(device)
    if device.type == "cpu":
        return cpu_has_native_bf16()
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    return False


def auto_precision(device: torch.device | str) -> str:
    """What ``auto`` means on ``device``: ``bf16`` where it computes bf16 natively, else ``fp32``."""
    return "bf16" if device_has_native_bf16(device) else "fp32"
