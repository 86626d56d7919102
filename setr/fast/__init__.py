"""Fast inference paths, applied in one explicit step: :func:`optimize_for_inference`.

The modules here compute the same function as the plain ones in :mod:`setr.models`, with the same
parameters and ``state_dict`` keys; they only change how an inference forward is computed.
"""

from .blocks import FusedBlock, can_fuse_block, fused_block_forward
from .convs import ClassifierConv2d, FoldedConvBNReLU, can_fold
from .heads import FastUpHead
from .int8 import Int8DynamicLinear, int8_kernels, quantize_encoder_linears
from .optimize import optimize_for_inference
from .precision import (
    PRECISIONS,
    cpu_has_native_bf16,
    device_has_native_bf16,
    floating_dtype,
    resolve_precision,
    to_precision,
)  # fmt: skip
from .segmentor import FastSETR
from .strips import can_run_in_strips, upsample_conv_classify_in_strips

__all__ = [
    "PRECISIONS", "ClassifierConv2d", "FastSETR", "FastUpHead", "FoldedConvBNReLU", "FusedBlock", "Int8DynamicLinear",
    "can_fold", "can_fuse_block", "can_run_in_strips", "cpu_has_native_bf16", "device_has_native_bf16",
    "floating_dtype", "fused_block_forward", "int8_kernels", "optimize_for_inference", "quantize_encoder_linears",
    "resolve_precision", "to_precision", "upsample_conv_classify_in_strips",
]  # fmt: skip
