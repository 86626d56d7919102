"""Inference precision: what the hardware does natively, and turning a model into that precision.

``fp32`` is the reference. ``bf16`` stores weights and activations in bfloat16; the matrix
products accumulate in fp32 inside the kernels (oneDNN on the CPU, cuBLAS on CUDA) and LayerNorm,
softmax inside attention and the BatchNorm folding are computed in fp32 from bf16 inputs. ``int8``
quantizes the encoder's Linear layers (:mod:`setr.fast.int8`). ``auto`` is bf16 where the device
computes it natively, else fp32.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from ._twin import shared_twin
from .cpu import cpu_features
from .int8 import int8_kernels, quantize_encoder_linears

__all__ = [
    "PRECISIONS", "cpu_has_native_bf16", "device_has_native_bf16", "floating_dtype", "resolve_precision",
    "to_precision",
]  # fmt: skip

PRECISIONS = ("fp32", "bf16", "int8", "auto")
"""The values ``precision=`` takes."""


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products natively: x86 ``AVX512_BF16`` or AMX tiles
    (as PyTorch's own probes report them), or an Arm core with the ``bf16`` extension."""
    probes = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    if any(probe is not None and probe() for probe in probes):
        return True
    return bool(cpu_features() & {"avx512_bf16", "amx_bf16", "bf16"})


def device_has_native_bf16(device: torch.device | str) -> bool:
    """Native bf16 on ``device``: :func:`cpu_has_native_bf16` on a CPU, compute capability 8.0 or
    newer on CUDA."""
    device = torch.device(device)
    if device.type == "cpu":
        return cpu_has_native_bf16()
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    return False


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """``fp32``, ``bf16`` or ``int8`` for ``precision`` on ``device``; ``auto`` becomes ``bf16`` where
    the device has native bf16 (:func:`device_has_native_bf16`), else ``fp32``.

    Raises:
        ValueError: an unknown precision, or ``int8`` on a device without its kernels (the
            message lists what the device offers).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: choose one of {', '.join(PRECISIONS)}")
    device = torch.device(device)
    if precision == "auto":
        return "bf16" if device_has_native_bf16(device) else "fp32"
    if precision == "int8" and (device.type != "cpu" or int8_kernels() is None):
        offered = "fp32, bf16" if device.type != "cpu" else "fp32, bf16 (no int8 engine in this PyTorch build)"
        raise ValueError(f"precision='int8' runs on the CPU only (fbgemm/oneDNN kernels); on {device} use {offered}")
    return precision


def _cast_floating(model: nn.Module, dtype: torch.dtype) -> None:
    """Give every floating parameter and buffer of ``model`` a new tensor of ``dtype`` (``Module.to``
    would change the tensors in place, and with them any model that shares them)."""
    for module in model.modules():
        for name, param in module._parameters.items():
            if param is not None and param.is_floating_point() and param.dtype != dtype:
                module._parameters[name] = nn.Parameter(param.detach().to(dtype), requires_grad=param.requires_grad)
        for name, buffer in module._buffers.items():
            if buffer is not None and buffer.is_floating_point() and buffer.dtype != dtype:
                module._buffers[name] = buffer.to(dtype)


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
    if not inplace:
        model = shared_twin(model)
    if precision == "fp32":
        _cast_floating(model, torch.float32)
    elif precision == "bf16":
        _cast_floating(model, torch.bfloat16)
    elif precision == "int8":
        quantize_encoder_linears(model)  # first: a bf16 model's Linear weights never become fp32 whole
        _cast_floating(model, torch.float32)
    else:
        raise ValueError(f"precision={precision!r}: to_precision takes fp32, bf16 or int8 (resolve 'auto' first)")
    return model


def floating_dtype(model: nn.Module) -> torch.dtype:
    """The dtype inputs to ``model`` should have: that of its first floating parameter (float32 if none)."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32
