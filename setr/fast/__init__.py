"""Fast inference paths, applied in one explicit step: :func:`optimize_for_inference`.

The modules here compute the same function as the plain ones in :mod:`setr.models`, with the same
parameters and ``state_dict`` keys; they only change how an inference forward is computed.
"""

from .blocks import FusedBlock, can_fuse_block, fused_block_forward
from .convs import ClassifierConv2d, FoldedConvBNReLU, can_fold
from .heads import FastUpHead
from .optimize import optimize_for_inference
from .strips import can_run_in_strips, upsample_conv_classify_in_strips

__all__ = [
    "ClassifierConv2d", "FastUpHead", "FoldedConvBNReLU", "FusedBlock", "can_fold", "can_fuse_block",
    "can_run_in_strips", "fused_block_forward", "optimize_for_inference", "upsample_conv_classify_in_strips",
]  # fmt: skip
