"""Small tensor helpers shared by the encoder and the heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

__all__ = ["ConvBNReLU", "conv2d_channels_last", "has_hooks", "resize", "tokens_to_map"]


def tokens_to_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``(B, h*w, D) -> (B, D, h, w)`` for a row-major token grid ``(h, w)``.

    For contiguous tokens the result is a channels-last view of the same memory (no copy).
    """
    batch, count, dim = tokens.shape
    if count != grid[0] * grid[1]:
        raise ValueError(f"{count} tokens do not fill a {grid[0]}x{grid[1]} grid")
    return rearrange(tokens, "b (h w) d -> b d h w", h=grid[0], w=grid[1])


def resize(x: torch.Tensor, size: tuple[int, int], align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize ``(B, C, h, w) -> (B, C, *size)``; returns ``x`` itself when already that size.

    The memory format of ``x`` is kept (channels-last in, channels-last out).
    """
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


def has_hooks(*modules: nn.Module) -> bool:
    """Whether any of ``modules`` (not their children) has forward or forward-pre hooks: a fast path
    that skips calling a module would skip them."""
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)


def conv2d_channels_last(
    conv: nn.Conv2d,
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    padding: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Run ``conv`` on ``x`` in the channels-last memory format: ``(B, C_in, h, w) -> (B, C_out, h', w')``.

    oneDNN (CPU) and cuDNN run 3x3 and 1x1 convolutions fastest in NHWC, and the token maps of the
    encoder already are NHWC views, but ``Conv2d`` with an NCHW weight may copy them back to NCHW.
    Passing both operands channels-last keeps the whole head in NHWC. The result is the same
    convolution (float round-off apart). A module with hooks, or one that is not a plain
    ``Conv2d``, is simply called, so hooks and wrappers keep working.

    Args:
        conv: the convolution (its stride, padding, dilation and groups are used).
        x: input ``(B, C_in, h, w)`` in any memory format.
        weight: replaces ``conv.weight`` (e.g. with a BatchNorm folded in); ``None`` for the module's own.
        bias: replaces ``conv.bias`` when ``weight`` is given.
        padding: replaces ``conv.padding`` (e.g. none across rows for a strip that carries its halo).
    """
    plain = type(conv) is nn.Conv2d and conv.padding_mode == "zeros"
    if not plain or (weight is None and padding is None and has_hooks(conv)):
        if weight is not None or padding is not None:
            raise ValueError("a folded weight or a padding override needs a plain nn.Conv2d with zero padding")
        return conv(x)
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


class ConvBNReLU(nn.Sequential):
    """``Conv2d -> BatchNorm2d -> ReLU`` with 'same' padding; children named ``conv``, ``bn``, ``act``.

    ``(B, C_in, h, w) -> (B, C_out, h, w)``, channels-last.

    The convolution runs channels-last (see ``conv2d_channels_last``). In eval mode the BatchNorm is
    an affine map of the convolution's output, so it is folded into the convolution's weight and
    bias: one pass over the (large, at high resolution) feature map instead of two, and one fewer
    map in memory. In training mode, with hooks on ``conv``/``bn``, or with other norm or conv
    modules swapped in, the three children run one after the other as usual.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def _can_fold(self) -> bool:
        bn = self.bn
        return (
            not self.training
            and isinstance(bn, nn.BatchNorm2d | nn.SyncBatchNorm)
            and bn.running_mean is not None
            and bn.running_var is not None
            and type(self.conv) is nn.Conv2d
            and self.conv.padding_mode == "zeros"
            and not has_hooks(self.conv)
            and not has_hooks(bn)
        )

    def _folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of ``bn(conv(x))`` as one convolution (eval-mode BatchNorm)."""
        conv, bn = self.conv, self.bn
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = bn.weight * scale
        shift = -bn.running_mean * scale
        if conv.bias is not None:
            shift = shift + conv.bias * scale
        if bn.bias is not None:
            shift = shift + bn.bias
        return conv.weight * scale.reshape(-1, 1, 1, 1), shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._can_fold():
            weight, bias = self._folded()
            return self.act(conv2d_channels_last(self.conv, x, weight, bias))
        return self.act(self.bn(conv2d_channels_last(self.conv, x)))
