"""SETR-MLA: the multi-level aggregation neck, its decode head and its auxiliary heads."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .._ops import ConvBNReLU, resize, tokens_to_map

__all__ = ["MLAAuxHead", "MLAHead", "MLANeck"]


class MLANeck(nn.Module):
    """Multi-level feature aggregation (the official ``Conv_MLA`` plus the ``norm_0..3`` before it).

    Each level: ``LayerNorm`` (eps 1e-6) on its tokens, a lateral ``1x1 conv -> BN -> ReLU`` to
    ``channels``; then a top-down cumulative sum (deepest level first, no resizing: all levels share
    the grid) and a ``3x3 conv -> BN -> ReLU`` per level. Convolutions have no bias.

    ``[(B, h*w, D)] * L -> [(B, channels, h, w)] * L``, shallowest level first.
    """

    def __init__(self, embed_dim: int, channels: int = 256, num_levels: int = 4) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(embed_dim, eps=1e-6) for _ in range(num_levels))
        self.lateral = nn.ModuleList(ConvBNReLU(embed_dim, channels, 1, bias=False) for _ in range(num_levels))
        self.smooth = nn.ModuleList(ConvBNReLU(channels, channels, 3, bias=False) for _ in range(num_levels))

    def forward(self, levels: Sequence[torch.Tensor], grid: tuple[int, int]) -> list[torch.Tensor]:
        if len(levels) != len(self.norms):
            raise ValueError(f"MLANeck expects {len(self.norms)} levels, got {len(levels)}")
        laterals = [lat(tokens_to_map(norm(t), grid)) for norm, lat, t in zip(self.norms, self.lateral, levels)]
        summed = [laterals[-1]]
        for lateral in reversed(laterals[:-1]):
            summed.insert(0, summed[0] + lateral)
        return [smooth(x) for smooth, x in zip(self.smooth, summed)]


class MLAHead(nn.Module):
    """The MLA decode head: per level two ``3x3 conv -> BN -> ReLU`` (no bias) and a x4 bilinear
    upsampling with ``align_corners=True`` (hard-coded in the official code), concatenation
    shallowest level first, a ``classifier_kernel`` conv classifier (3x3 officially), and a
    bilinear resize to the output size (``align_corners=False``).

    ``[(B, in_channels, h, w)] * L -> (B, num_classes, *out_size)``.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 256,
        head_channels: int = 128,
        num_levels: int = 4,
        classifier_kernel: int = 3,
        align_corners: bool = True,
    ) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.branches = nn.ModuleList(
            nn.Sequential(
                ConvBNReLU(in_channels, head_channels, 3, bias=False),
                ConvBNReLU(head_channels, head_channels, 3, bias=False),
            )
            for _ in range(num_levels)
        )
        self.classifier = nn.Conv2d(
            head_channels * num_levels, num_classes, classifier_kernel, padding=classifier_kernel // 2
        )

    def forward(self, levels: Sequence[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        h, w = levels[0].shape[-2:]
        upsampled = [
            resize(branch(x), (4 * h, 4 * w), align_corners=self.align_corners)
            for branch, x in zip(self.branches, levels)
        ]
        return resize(self.classifier(torch.cat(upsampled, dim=1)), out_size)


class MLAAuxHead(nn.Module):
    """MLA auxiliary head: a 1x1 classifier on one neck level, resized to the output size.

    ``(B, in_channels, h, w) -> (B, num_classes, *out_size)``.
    """

    def __init__(self, num_classes: int, in_channels: int = 256, bias: bool = False) -> None:
        super().__init__()
        self.classifier = nn.Conv2d(in_channels, num_classes, 1, bias=bias)

    def forward(self, x: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
        return resize(self.classifier(x), out_size)
