"""int8 inference of the encoder's Linear layers on the CPU: dynamic quantization.

Each ``nn.Linear`` of an encoder block becomes an :class:`Int8DynamicLinear`: its weight is
quantized once to int8 with one scale per output channel (symmetric), and at every call the
activations are quantized to uint8 with one scale for the tensor, multiplied in int8 by PyTorch's
dynamic-quantized linear kernel (fbgemm / oneDNN, VNNI instructions where the CPU has them) and
returned in float32 with the bias added.

Why not torchao: its ``Int8DynamicActivationInt8WeightConfig`` is written for Inductor to fuse;
run eagerly on this CPU it quantizes the activations in separate passes and measured 0.93x the
fp32 speed on a ViT-L MLP (2304 tokens, a one-off script), where this kernel measured 2.6x; on whole
ViT-L models ``benchmarks/precision.py`` measures 1.7-2.1x.
"""

from __future__ import annotations

import warnings

import torch
from timm.models.vision_transformer import Block
from torch import nn

from ..dtypes import cpu_features

__all__ = ["Int8DynamicLinear", "int8_kernels", "quantize_encoder_linears"]


def int8_kernels() -> str | None:
    """The quantized engine PyTorch runs int8 linear layers with here (``x86``, ``fbgemm`` or
    ``onednn``), or ``None`` if this build has none."""
    engines = torch.backends.quantized.supported_engines
    return next((engine for engine in ("x86", "fbgemm", "onednn") if engine in engines), None)


def _needs_reduced_range() -> bool:
    """Without VNNI, x86 int8 products go through 16-bit sums that can saturate: the kernel then
    needs activations quantized to 7 bits (``reduce_range``)."""
    return not cpu_features() & {"avx512_vnni", "avx_vnni", "amx_int8"}


class Int8DynamicLinear(nn.Module):
    """``(..., in_features) -> (..., out_features)``: a Linear with an int8 weight (per output
    channel) and activations quantized at each call (per tensor). Inference only, on the CPU; the
    output is float32. Built from an ``nn.Linear`` by :func:`quantize_encoder_linears`.

    The packed weight is not a parameter: ``state_dict()`` does not hold it. Save the float model
    and quantize after loading.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        if int8_kernels() is None:
            raise RuntimeError("this PyTorch build has no quantized CPU engine: int8 is unavailable, use fp32 or bf16")
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        weight = linear.weight.detach().float().cpu()
        scale = weight.abs().amax(dim=1).clamp_min(1e-12) / 127.0
        zero = torch.zeros(weight.shape[0], dtype=torch.long)
        with warnings.catch_warnings():
            # PyTorch 2.14 flags quantized-tensor creation as deprecated (pytorch#184982); it is
            # the input the kernel's weight packing takes. docs/precision.md says what happens when it goes.
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*", category=UserWarning)
            quantized = torch.quantize_per_channel(weight, scale.double(), zero, 0, torch.qint8)
        bias = linear.bias.detach().float().cpu() if linear.bias is not None else None
        self.reduce_range = _needs_reduced_range()
        self._packed = torch.ops.quantized.linear_prepack(quantized, bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, reduce_range={self.reduce_range}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float().contiguous()
        out = torch.ops.quantized.linear_dynamic(rows, self._packed, self.reduce_range)
        return out.reshape(*x.shape[:-1], self.out_features)


def quantize_encoder_linears(model: nn.Module) -> int:
    """Replace every ``nn.Linear`` inside the timm ``Block``\\ s of ``model`` (attention qkv and
    projection, MLP fc1 and fc2) with an :class:`Int8DynamicLinear`, in place.

    Returns:
        How many layers were quantized.
    """
    count = 0
    for block in [m for m in model.modules() if isinstance(m, Block)]:
        for name, child in list(block.named_modules()):
            if type(child) is nn.Linear:
                parent_name, _, attr = name.rpartition(".")
                setattr(block.get_submodule(parent_name) if parent_name else block, attr, Int8DynamicLinear(child))
                count += 1
    return count
