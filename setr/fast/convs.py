"""Convolutions for inference: channels-last operands, and BatchNorm folded into the convolution.

oneDNN (CPU) runs 3x3 and 1x1 convolutions fastest in NHWC, and the encoder's token maps already
are NHWC views, but ``Conv2d`` with an NCHW weight may copy them back to NCHW; passing both operands
channels-last keeps a whole head in NHWC. In eval mode a BatchNorm is an affine map of the
convolution's output, so it folds into the convolution's weight and bias: one pass over a (large, at
high resolution) feature map instead of two, and one map fewer in memory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.heads import ConvBNReLU
from ._hooks import has_hooks

__all__ = ["ClassifierConv2d", "FoldedConvBNReLU", "can_fold", "conv2d_channels_last", "fold_conv_bn"]


def conv2d_channels_last(
    conv: nn.Conv2d,
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    padding: tuple[int, int] | None = None,
) -> torch.Tensor:
    """``conv`` on ``x`` with both operands channels-last: ``(B, C_in, h, w) -> (B, C_out, h', w')``.

    Args:
        conv: the convolution (its stride, padding, dilation and groups are used).
        x: input ``(B, C_in, h, w)`` in any memory format.
        weight: replaces ``conv.weight`` (e.g. with a BatchNorm folded in); ``None`` for the module's own.
        bias: replaces ``conv.bias`` when ``weight`` is given.
        padding: replaces ``conv.padding`` (e.g. none across rows for a strip that carries its halo).
    """
    if weight is None:
        weight, bias = conv.weight, conv.bias
    channels_last = torch.channels_last
    return F.conv2d(
        x.contiguous(memory_format=channels_last),
        weight.contiguous(memory_format=channels_last),
        bias,
        conv.stride,
        conv.padding if padding is None else padding,
        conv.dilation,
        conv.groups,
    )


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``bn(conv(x))`` as one convolution (eval-mode BatchNorm), computed in fp32
    and returned in the convolution's dtype."""
    dtype = conv.weight.dtype
    scale = torch.rsqrt(bn.running_var.float() + bn.eps)
    if bn.weight is not None:
        scale = bn.weight.float() * scale
    shift = -bn.running_mean.float() * scale
    if conv.bias is not None:
        shift = shift + conv.bias.float() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.float()
    return (conv.weight.float() * scale.reshape(-1, 1, 1, 1)).to(dtype), shift.to(dtype)


def _plain_conv2d(conv: nn.Module) -> bool:
    return type(conv) in (nn.Conv2d, ClassifierConv2d) and conv.padding_mode == "zeros" and not has_hooks(conv)


def can_fold(block: nn.Module) -> bool:
    """Whether ``block`` is a :class:`ConvBNReLU` that :class:`FoldedConvBNReLU` computes exactly (or
    already is one):
    a plain zero-padded ``Conv2d``, a ``BatchNorm2d`` with running statistics, a ReLU, no hooks."""
    if type(block) not in (ConvBNReLU, FoldedConvBNReLU) or has_hooks(block, block.bn, block.act):
        return False
    bn = block.bn
    return (
        _plain_conv2d(block.conv)
        and type(bn) in (nn.BatchNorm2d, nn.SyncBatchNorm)
        and bn.running_mean is not None
        and bn.running_var is not None
        and type(block.act) is nn.ReLU
    )


class FoldedConvBNReLU(ConvBNReLU):
    """A :class:`ConvBNReLU` that, in eval mode, runs as one channels-last convolution with the
    BatchNorm folded in (recomputed from the current parameters on every call, so loading new
    weights keeps it right). In training mode it is the plain module.

    ``(B, C_in, h, w) -> (B, C_out, h, w)``, channels-last.
    """

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The folded ``(weight, bias)``."""
        return fold_conv_bn(self.conv, self.bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().forward(x)
        weight, bias = self.folded()
        return self.act(conv2d_channels_last(self.conv, x, weight, bias))


class ClassifierConv2d(nn.Conv2d):
    """A classifier ``Conv2d`` computed channels-last (its input usually is), returning contiguous
    NCHW logits: the final resize of few-channel logits runs faster in NCHW."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d_channels_last(self, x).contiguous()
