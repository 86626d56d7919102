"""Inference precision: what the hardware does natively, and turning a model into that precision.

``fp32`` is the reference. ``bf16`` stores weights and activations in bfloat16; the matrix
products accumulate in fp32 inside the kernels (oneDNN on the CPU, cuBLAS on CUDA) and LayerNorm,
softmax inside attention and the BatchNorm folding are computed in fp32 from bf16 inputs. ``int8``
quantizes the encoder's Linear layers (:mod:`setr.fast.int8`). ``auto`` is bf16 where the device
computes it natively, else fp32. The words, their dtypes and what ``auto`` means on a device are
:mod:`setr.dtypes`'s; this module adds what a model needs to run in them.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from ..dtypes import auto_precision, cast_floating, cpu_has_native_bf16, device_has_native_bf16, parse_precision
from ..dtypes import precision_dtype as _precision_dtype
from ._twin import shared_twin
from .int8 import int8_kernels, quantize_encoder_linears

__all__ = [
    "PRECISIONS", "cpu_has_native_bf16", "device_has_native_bf16", "floating_dtype", "resolve_precision",
    "to_precision",
]  # fmt: skip

PRECISIONS = ("fp32", "bf16", "int8", "auto")
"""The values ``precision=`` takes."""


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """``fp32``, ``bf16`` or ``int8`` for ``precision`` on ``device``; ``auto`` becomes ``bf16`` where
    the device has native bf16 (:func:`device_has_native_bf16`), else ``fp32``.

    Raises:
        ValueError: an unknown precision, or ``int8`` on a device without its kernels (the
            message lists what the device offers).
    """
    precision = parse_precision(precision, PRECISIONS)
    device = torch.device(device)
    if precision == "auto":
        return auto_precision(device)
    if precision == "int8" and (device.type != "cpu" or int8_kernels() is None):
        offered = "fp32, bf16" if device.type != "cpu" else "fp32, bf16 (no int8 engine in this PyTorch build)"
        raise ValueError(f"precision='int8' runs on the CPU only (fbgemm/oneDNN kernels); on {device} use {offered}")
    return precision


def to_precision(model: nn.Module, precision: str, *, inplace: bool = False) -> nn.Module:
    """``model`` in ``precision``: by default a new module tree (:func:`setr.optimize_for_inference`'s
    kind of twin: unchanged tensors are shared), with ``inplace`` ``model`` itself; converted
    tensors are new ones either way, so a model sharing them is never changed.

    - ``fp32``: floating tensors in float32.
    - ``bf16``: floating tensors in bfloat16 (feed it bf16 inputs; :class:`setr.Predictor` does).
    - ``int8``: the encoder blocks' Linear layers quantized (int8 weights per output channel,
      activations per call); everything else float32.

    ``precision`` must already be resolved (:func:`resolve_precision`).
    """
    if precision not in ("fp32", "bf16", "int8"):
        raise ValueError(f"precision={precision!r}: to_precision takes fp32, bf16 or int8 (resolve 'auto' first)")
    if not inplace:
        model = shared_twin(model)
    if precision == "int8":
        quantize_encoder_linears(model)  # first: a bf16 model's Linear weights never become fp32 whole
    return cast_floating(model, _precision_dtype(precision))


def floating_dtype(model: nn.Module) -> torch.dtype:
    """The dtype inputs to ``model`` should have: that of its first floating parameter (float32 if none)."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32
