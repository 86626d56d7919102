"""The ViT encoder of SETR: patch embedding, position embedding, a stack of pre-norm blocks.

Also the encoder's output format, written once: :func:`tokens_to_map` and the block-index rule
(:func:`~setr.models.config.check_block_index`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import PatchEmbed as _TimmPatchEmbed
from timm.layers import resample_abs_pos_embed, trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import check_block_index

__all__ = ["PatchEmbed", "ViTEncoder", "tokens_to_map"]


def tokens_to_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``(B, h*w, D) -> (B, D, h, w)`` for a row-major token grid ``(h, w)``, as a contiguous map.

    Contiguous (a copy), so that the heads' weight gradients have the parameters' own strides,
    which DDP requires of them; the inference fast path uses a channels-last view instead.
    """
    count = tokens.shape[1]
    if count != grid[0] * grid[1]:
        raise ValueError(f"{count} tokens do not fill a {grid[0]}x{grid[1]} grid")
    return rearrange(tokens, "b (h w) d -> b d h w", h=grid[0], w=grid[1]).contiguous()


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


class ViTEncoder(nn.Module):
    """Vision Transformer that returns the raw outputs of chosen blocks (no final norm).

    Parameter names are timm's (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
    ``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``); the blocks are timm's
    ``Block`` with attention through ``F.scaled_dot_product_attention``.

    The position embedding is stored for the training crop (``img_size``) and resized at run time
    (bilinear, ``align_corners=False``) when the token grid differs, so any ``H x W`` works; on the
    training crop no resizing happens and the network is the official one.

    ``(B, C, H, W) -> [(B, h*w, D)] * len(indices)``, with ``h, w = ceil(H/16), ceil(W/16)``.

    The blocks run as timm wrote them; ``setr.optimize_for_inference`` swaps in fused versions.
    """

    def __init__(
        self,
        img_size: int = 768,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        class_token: bool = True,
        patch_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        """
        Args:
            img_size: training crop side; the position embedding has ``(img_size/patch)^2`` slots.
            patch_size: patch side.
            in_chans: image channels.
            embed_dim: token width D.
            depth: number of transformer blocks.
            num_heads: attention heads per block.
            mlp_ratio: MLP hidden width as a multiple of D.
            qkv_bias: bias in the fused qkv projection.
            class_token: prepend a cls token that runs through every block (official Naive/PUP).
                Without it there is no cls parameter and no cls position slot: official MLA drops
                the cls token before the first block, which is the same network.
            patch_bias: bias in the patch-embedding convolution.
            drop_rate: dropout after adding the position embedding and inside the blocks.
            attn_drop_rate: dropout on attention weights.
            drop_path_rate: stochastic depth, rising linearly to this value over the blocks.
        """
        super().__init__()
        self.img_size = img_size
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.depth = depth
        self.num_prefix_tokens = 1 if class_token else 0
        self.grad_checkpointing = False

        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, bias=patch_bias)
        grid = img_size // patch_size
        self.grid_size = (grid, grid)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + self.num_prefix_tokens, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        drop_path_rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            Block(
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                proj_drop=drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=rate,
                norm_layer=partial(nn.LayerNorm, eps=1e-6),
                act_layer=nn.GELU,
            )
            for rate in drop_path_rates
        )
        for block in self.blocks:
            block.attn.fused_attn = True
        self.init_weights()

    def init_weights(self) -> None:
        """Official initialisation: truncated normal (std 0.02) for tokens and Linear layers."""
        trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            trunc_normal_(self.cls_token, std=0.02)
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in the backward pass instead of storing its activations."""
        self.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}

    def _position_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """``(1, prefix + h*w, D)`` position embedding for a token grid of ``grid``."""
        return resample_abs_pos_embed(
            self.pos_embed,
            new_size=list(grid),
            old_size=list(self.grid_size),
            num_prefix_tokens=self.num_prefix_tokens,
            interpolation="bilinear",
            antialias=False,  # bilinear, align_corners=False: timm's default for it, and the official resize
        )

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """``(B, C, H, W) -> (B, prefix + h*w, D)`` tokens with positions added, and ``(h, w)``."""
        x = self.patch_embed(x)
        batch, h, w, dim = x.shape
        x = x.reshape(batch, h * w, dim)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(batch, -1, -1), x], dim=1)
        x = x + self._position_embedding((h, w))
        return self.pos_drop(x), (h, w)

    def forward(
        self, x: torch.Tensor, indices: Sequence[int] | None = None
    ) -> tuple[list[torch.Tensor], tuple[int, int]]:
        """Run the blocks and collect the outputs of ``indices`` (default: the last block).

        Args:
            x: images ``(B, C, H, W)``, already normalised.
            indices: block indices (negative counts from the end); repeats are allowed (one
                output each).

        Returns:
            The patch tokens ``(B, h*w, D)`` after each requested block (cls token removed, no
            norm), in the order of ``indices``, and the token grid ``(h, w)``.
        """
        indices = [self.depth - 1] if indices is None else [check_block_index(i, self.depth) for i in indices]
        tokens, grid = self.embed(x)
        wanted = set(indices)
        collected: dict[int, torch.Tensor] = {}
        for i, block in enumerate(self.blocks[: max(indices) + 1]):
            if self.grad_checkpointing:
                tokens = checkpoint(block, tokens, use_reentrant=False)
            else:
                tokens = block(tokens)
            if i in wanted:
                collected[i] = tokens[:, self.num_prefix_tokens :]
        return [collected[i] for i in indices], grid
