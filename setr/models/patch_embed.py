"""Patch embedding: a strided convolution that turns an image into a grid of tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed as _TimmPatchEmbed

__all__ = ["PatchEmbed"]


class PatchEmbed(_TimmPatchEmbed):
    """Image to patch tokens, for any input size.

    A ``Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)`` (parameter name ``proj``, as
    in timm and the official SETR code). Inputs whose sides are not a multiple of ``patch_size``
    are zero-padded at the bottom and right first, so any ``H x W`` is accepted.

    ``(B, C, H, W) -> (B, ceil(H/p), ceil(W/p), D)`` (channels last, ready to flatten into tokens).
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 768,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 1024,
        bias: bool = True,
    ) -> None:
        """
        Args:
            img_size: the training crop; it only sets the reference grid of the position embedding.
            patch_size: side of a square patch (and the convolution stride).
            in_chans: input channels.
            embed_dim: token width D.
            bias: whether the projection has a bias (every SETR release has one).
        """
        super().__init__(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            bias=bias,
            output_fmt="NHWC",
            strict_img_size=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.proj.in_channels:
            raise ValueError(
                f"PatchEmbed expects images of shape (B, {self.proj.in_channels}, H, W), got {tuple(x.shape)}"
            )
        # Pad to the next multiple of the patch, written as a ceiling division so that under
        # torch.export the token grid stays a simple symbolic expression of H and W.
        patch_h, patch_w = self.patch_size
        height, width = x.shape[-2:]
        pad_h = (height + patch_h - 1) // patch_h * patch_h - height
        pad_w = (width + patch_w - 1) // patch_w * patch_w - width
        x = self.proj(F.pad(x, (0, pad_w, 0, pad_h)))
        return self.norm(x.permute(0, 2, 3, 1))
