"""The last stage of a PUP-style head, ``upsample -> conv -> BN -> ReLU -> 1x1 classifier``, computed in
horizontal strips, so its full-resolution feature maps never exist at once.

At 768x768 the last PUP stage works on two ``256 x 384 x 384`` fp32 maps (151 MB each), which set the
inference memory peak of the whole model and cost a page fault per 4 KiB the first time they are
written. In strips of rows, each map is a few MiB that stays in cache. The result is the same
computation: bilinear upsampling with ``align_corners=False`` of a strip of input rows reproduces
the full map's rows exactly as long as the strip carries one extra input row on each side, and the
convolution's zero padding is applied only at the image's own top and bottom edges.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..models.heads import resize
from ._hooks import has_hooks
from .convs import can_fold, conv2d_channels_last, fold_conv_bn

__all__ = ["STRIP_BYTES", "can_run_in_strips", "upsample_conv_classify_in_strips"]

STRIP_BYTES = 16 * 2**20
"""Target size of one strip of the upsampled feature map (16 MiB: a few strips of L3 cache)."""


def _plain_conv(conv: nn.Module) -> bool:
    return (
        isinstance(conv, nn.Conv2d)
        and conv.padding_mode == "zeros"
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.kernel_size[0] == conv.kernel_size[1]
        and conv.kernel_size[0] % 2 == 1
        and conv.padding == (conv.kernel_size[0] // 2,) * 2
        and not has_hooks(conv)
    )


def can_run_in_strips(stage: nn.Module, classifier: nn.Module) -> bool:
    """Whether ``upsample_conv_classify_in_strips`` computes exactly what the modules would in eval mode.

    Needs a ``ConvBNReLU`` whose BatchNorm folds (see :func:`can_fold`), with an odd square 'same'
    convolution, and a plain 1x1 classifier; no hooks.
    """
    if not can_fold(stage):
        return False
    return _plain_conv(stage.conv) and _plain_conv(classifier) and classifier.kernel_size == (1, 1)


def _source_row(row: int, scale: int) -> int:
    """The first input row that output ``row`` of an ``x scale`` bilinear upsampling reads."""
    return math.floor((row + 0.5) / scale - 0.5)


def upsample_conv_classify_in_strips(
    x: torch.Tensor,
    scale: int,
    stage: nn.Module,
    classifier: nn.Conv2d,
    strip_bytes: int = STRIP_BYTES,
) -> torch.Tensor:
    """``classifier(stage(resize(x, x scale)))`` computed strip by strip (callers check
    ``can_run_in_strips`` first).

    Args:
        x: feature map ``(B, C, h, w)``, any memory format.
        scale: integer upsampling factor (bilinear, ``align_corners=False``).
        stage: the ``ConvBNReLU`` after the upsampling (its BatchNorm is folded in: eval mode).
        classifier: the 1x1 classifier convolution.
        strip_bytes: about how many bytes of the upsampled map one strip holds.

    Returns:
        Logits ``(B, num_classes, h * scale, w * scale)``, contiguous NCHW.
    """
    batch, _, height, width = x.shape
    out_height, out_width = height * scale, width * scale
    weight, bias = fold_conv_bn(stage.conv, stage.bn)
    weight = weight.contiguous(memory_format=torch.channels_last)  # once, not once per strip
    halo = stage.conv.kernel_size[0] // 2
    if batch * out_height * out_width == 0:
        return x.new_empty(batch, classifier.out_channels, out_height, out_width)
    row_bytes = batch * stage.conv.in_channels * out_width * x.element_size()
    rows_per_strip = max(1, strip_bytes // row_bytes)
    logits = x.new_empty(batch, classifier.out_channels, out_height, out_width)
    for top in range(0, out_height, rows_per_strip):
        bottom = min(top + rows_per_strip, out_height)
        # Rows of the upsampled map the convolution reads; beyond the image they are its zero padding.
        first, last = max(top - halo, 0), min(bottom + halo, out_height)
        src_first = max(_source_row(first, scale), 0)
        src_end = min(_source_row(last - 1, scale) + 2, height)  # + the row it blends with, + exclusive end
        upsampled = resize(x[:, :, src_first:src_end], ((src_end - src_first) * scale, out_width))
        upsampled = upsampled[:, :, first - src_first * scale : last - src_first * scale]
        pad_top, pad_bottom = first - (top - halo), (bottom + halo) - last
        if pad_top or pad_bottom:
            upsampled = F.pad(upsampled, (0, 0, pad_top, pad_bottom))
        features = conv2d_channels_last(stage.conv, upsampled, weight, bias, padding=(0, halo))
        logits[:, :, top:bottom] = conv2d_channels_last(classifier, features.relu_())
    return logits
