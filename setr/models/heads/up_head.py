"""Naive and PUP heads: LayerNorm on tokens, conv/BN/ReLU stages with bilinear upsampling, a 1x1 classifier."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .._ops import ConvBNReLU, resize, tokens_to_map

__all__ = ["NaiveHead", "PUPAuxHead", "PUPHead", "UpHead"]


class UpHead(nn.Module):
    """The official ``VisionTransformerUpHead`` family, one stage per entry of ``up_scales``.

    Forward: ``LayerNorm`` (own weights, eps 1e-6) on the tokens, reshape to a map, then for each
    stage ``conv(k x k) -> BN -> ReLU`` followed by a bilinear upsampling by that stage's factor,
    then a 1x1 classifier and a final bilinear resize to the output size (``align_corners=False``
    throughout).

    ``(B, h*w, D) -> (B, num_classes, *out_size)``.
    """

    def __init__(
        self,
        embed_dim: int,
        num_classes: int,
        channels: int = 256,
        kernel_size: int = 1,
        up_scales: Sequence[int] = (1,),
        conv_bias: bool = True,
    ) -> None:
        """
        Args:
            embed_dim: token width D of the encoder.
            num_classes: output classes.
            channels: width of the conv stages (256 in every SETR head).
            kernel_size: kernel of the conv stages (1 for Naive, 3 for PUP).
            up_scales: upsampling factor after each conv stage (1 = none); the number of stages.
            conv_bias: bias in the stage convolutions (the official heads have one before BN).
        """
        super().__init__()
        if not up_scales:
            raise ValueError("an UpHead needs at least one conv stage (up_scales is empty)")
        self.up_scales = tuple(int(s) for s in up_scales)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        widths = [embed_dim] + [channels] * len(self.up_scales)
        self.convs = nn.ModuleList(
            ConvBNReLU(widths[i], widths[i + 1], kernel_size, bias=conv_bias) for i in range(len(self.up_scales))
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int], out_size: tuple[int, int]) -> torch.Tensor:
        """
        Args:
            tokens: patch tokens ``(B, h*w, D)`` from one encoder block.
            grid: the token grid ``(h, w)``.
            out_size: output ``(H, W)``.

        Returns:
            Logits ``(B, num_classes, H, W)``.
        """
        x = tokens_to_map(self.norm(tokens), grid)  # (B, D, h, w)
        for conv, scale in zip(self.convs, self.up_scales):
            x = conv(x)
            if scale != 1:
                x = resize(x, (x.shape[-2] * scale, x.shape[-1] * scale))
        return resize(self.classifier(x), out_size)


class NaiveHead(UpHead):
    """SETR-Naive: ``LN -> 1x1 conv -> BN -> ReLU -> 1x1 classifier -> x16``.

    ``(B, h*w, D) -> (B, num_classes, *out_size)``. Also the Naive auxiliary head.
    """

    def __init__(self, embed_dim: int, num_classes: int, channels: int = 256) -> None:
        super().__init__(embed_dim, num_classes, channels, kernel_size=1, up_scales=(1,))


class PUPHead(UpHead):
    """SETR-PUP: four ``3x3 conv -> BN -> ReLU`` stages with x2 after the first three, a 1x1
    classifier at 1/2 resolution, and a last x2.

    ``(B, h*w, D) -> (B, num_classes, *out_size)``.
    """

    def __init__(self, embed_dim: int, num_classes: int, channels: int = 256) -> None:
        super().__init__(embed_dim, num_classes, channels, kernel_size=3, up_scales=(2, 2, 2, 1))


class PUPAuxHead(UpHead):
    """The PUP auxiliary head: ``LN -> 3x3 conv -> BN -> ReLU -> x4 -> 1x1 classifier -> x4``.

    ``(B, h*w, D) -> (B, num_classes, *out_size)``.
    """

    def __init__(self, embed_dim: int, num_classes: int, channels: int = 256) -> None:
        super().__init__(embed_dim, num_classes, channels, kernel_size=3, up_scales=(4,))
