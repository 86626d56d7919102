"""The SETR encoder as a feature extractor for another decoder, in timm's ``features_only`` style."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.models import FeatureInfo
from torch import nn

from .config import check_block_index
from .encoder import ViTEncoder, tokens_to_map

__all__ = ["SETRBackbone"]


class SETRBackbone(nn.Module):
    """A :class:`ViTEncoder` whose forward returns the outputs of chosen blocks as feature maps.

    ``(B, in_chans, H, W)`` normalised images -> a list of ``(B, D, ceil(H/16), ceil(W/16))``
    maps, one per entry of ``out_indices`` in that order (raw block outputs, no norm, no cls
    token). ``feature_info`` is timm's :class:`~timm.models.FeatureInfo` (``channels()``,
    ``reduction()``), one entry per block. Parameter names are the segmentor's (``encoder.*``),
    so a SETR ``state_dict`` loads into it after dropping the heads.

    Built by ``setr.create_model(name, features_only=True, out_indices=...)``.
    """

    def __init__(self, encoder: ViTEncoder, out_indices: Sequence[int]) -> None:
        """
        Args:
            encoder: the ViT encoder (taken over, not copied).
            out_indices: 0-based blocks whose outputs are returned; negative counts from the end.
        """
        super().__init__()
        depth = encoder.depth
        indices = [check_block_index(i, depth, "out_indices: block") for i in out_indices]
        if not indices:
            raise ValueError("out_indices is empty: name at least one encoder block")
        self.encoder = encoder
        self.out_indices = tuple(indices)
        blocks = [dict(num_chs=encoder.embed_dim, reduction=encoder.patch_size, module=f"encoder.blocks.{i}")
                  for i in range(depth)]  # fmt: skip
        self.feature_info = FeatureInfo(blocks, self.out_indices)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        tokens, (h, w) = self.encoder(x, self.out_indices)
        return [tokens_to_map(t, (h, w)) for t in tokens]
