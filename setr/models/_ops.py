"""Small tensor helpers and the ``conv -> BN -> ReLU`` unit shared by the encoder and the heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

__all__ = ["ConvBNReLU", "resize", "tokens_to_map"]


def tokens_to_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``(B, h*w, D) -> (B, D, h, w)`` for a row-major token grid ``(h, w)``, as a contiguous map.

    Contiguous (a copy), so that the heads' weight gradients have the parameters' own strides,
    which DDP requires of them; the inference fast path uses a channels-last view instead.
    """
    count = tokens.shape[1]
    if count != grid[0] * grid[1]:
        raise ValueError(f"{count} tokens do not fill a {grid[0]}x{grid[1]} grid")
    return rearrange(tokens, "b (h w) d -> b d h w", h=grid[0], w=grid[1]).contiguous()


def resize(x: torch.Tensor, size: tuple[int, int], align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize ``(B, C, h, w) -> (B, C, *size)``; returns ``x`` itself when already that size."""
    size = (size[0], size[1])  # no int(): under torch.export the sizes are symbolic and stay so
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


class ConvBNReLU(nn.Sequential):
    """``Conv2d -> BatchNorm2d -> ReLU`` with 'same' padding; children named ``conv``, ``bn``, ``act``.

    ``(B, C_in, h, w) -> (B, C_out, h, w)``. The three children run one after the other (the
    official computation); ``setr.optimize_for_inference`` swaps in a version with the BatchNorm
    folded into the convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)
