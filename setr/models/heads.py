"""The decode and auxiliary heads of SETR: Naive, PUP, MLA (and the MLA neck).

Every head ends in a ``classifier`` (a ``Conv2d``) and a bilinear resize to the output size; the
stages are ``conv -> BN -> ReLU`` units (:class:`ConvBNReLU`). The official stage topologies are the
tables of :mod:`setr.models.config`; each head class reads its own from there.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import AUX_STAGES, DECODE_STAGES
from .encoder import tokens_to_map

__all__ = ["ConvBNReLU", "MLAAuxHead", "MLAHead", "MLANeck", "NaiveHead", "PUPAuxHead", "PUPHead", "UpHead", "resize"]


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


class UpHead(nn.Module):
    """The official ``VisionTransformerUpHead`` family, one stage per entry of ``up_scales``.

    Forward: ``LayerNorm`` (own weights, eps 1e-6) on the tokens, reshape to a map, then for each
    stage ``conv(k x k) -> BN -> ReLU`` followed by a bilinear upsampling by that stage's factor,
    then a 1x1 classifier and a final bilinear resize to the output size (``align_corners=False``
    throughout). :class:`NaiveHead`, :class:`PUPHead` and :class:`PUPAuxHead` are this head with
    their official stages (``STAGES``) as defaults; another release (mmsegmentation's) passes its own.

    ``(B, h*w, D) -> (B, num_classes, *out_size)``.
    """

    STAGES = DECODE_STAGES["naive"]
    """The stages used when ``kernel_size`` / ``up_scales`` are not given."""

    def __init__(
        self,
        embed_dim: int,
        num_classes: int,
        channels: int = 256,
        kernel_size: int | None = None,
        up_scales: Sequence[int] | None = None,
        conv_bias: bool = True,
    ) -> None:
        """
        Args:
            embed_dim: token width D of the encoder.
            num_classes: output classes.
            channels: width of the conv stages (256 in every SETR head).
            kernel_size: kernel of the conv stages (default: the class's ``STAGES``).
            up_scales: upsampling factor after each conv stage (1 = none); the number of stages
                (default: the class's ``STAGES``).
            conv_bias: bias in the stage convolutions (the official heads have one before BN).
        """
        super().__init__()
        kernel_size = self.STAGES.kernel_size if kernel_size is None else kernel_size
        up_scales = self.STAGES.up_scales if up_scales is None else up_scales
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
    """SETR-Naive, decode and auxiliary: ``LN -> 1x1 conv -> BN -> ReLU -> 1x1 classifier -> x16``.

    ``(B, h*w, D) -> (B, num_classes, *out_size)``.
    """

    STAGES = DECODE_STAGES["naive"]


class PUPHead(UpHead):
    """SETR-PUP: four ``3x3 conv -> BN -> ReLU`` stages with x2 after the first three, a 1x1
    classifier at 1/2 resolution, and a last x2.

    ``(B, h*w, D) -> (B, num_classes, *out_size)``.
    """

    STAGES = DECODE_STAGES["pup"]


class PUPAuxHead(UpHead):
    """The PUP auxiliary head: ``LN -> 3x3 conv -> BN -> ReLU -> x4 -> 1x1 classifier -> x4``.

    ``(B, h*w, D) -> (B, num_classes, *out_size)``.
    """

    STAGES = AUX_STAGES["pup"]


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
