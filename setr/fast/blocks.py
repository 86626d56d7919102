"""A leaner CPU inference path through a timm ViT ``Block``: same arithmetic, fewer memory passes.

On CPU, what the FLOP count leaves out of a ViT-L block costs real time: ``addmm`` first copies the
broadcast bias into every output, GELU reads and writes a ``N x 4D`` hidden map, and the residual
adds make two more passes; every large output is also fresh memory that the C allocator maps (and
the kernel zeroes) page by page. This path computes the same block with:

- the residual add folded into the projections' GEMMs (``addmm`` accumulating into ``x + bias``);
- the MLP run over chunks of tokens, so its hidden map (``chunk x 4D``) stays in cache, GELU runs
  in place on it, and no ``N x 4D`` map is ever allocated.

:func:`setr.optimize_for_inference` turns every plain timm ``Block`` (standard attention and MLP, no
hooks anywhere in it) into a :class:`FusedBlock`: the same module with the same parameters, whose
forward takes this path in inference (eval mode, no autograd, no autocast) and is timm's own
otherwise.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from timm.models.vision_transformer import Attention, Block
from torch import nn

from ._hooks import has_hooks

__all__ = ["MLP_CHUNK_TOKENS", "FusedBlock", "can_fuse_block", "fused_block_forward"]

MLP_CHUNK_TOKENS = 1024
"""Most tokens per MLP chunk: a ``1024 x 4096`` fp32 hidden map is 16 MiB, within a server CPU's L3,
and the GEMMs stay large enough to run at the full matmul rate (measured on ViT-L at N = 2305).
The tokens are split into equal chunks no larger than this (2305 -> 3 x 769, not 1024 + 1024 + 257,
whose small last GEMM runs slower)."""


def _is_identity(module: nn.Module | None) -> bool:
    return module is None or isinstance(module, nn.Identity)


def can_fuse_block(block: nn.Module) -> bool:
    """Whether ``fused_block_forward(block, x)`` computes exactly ``block(x)`` (in inference).

    True for a plain timm ``Block``: LayerNorms, SDPA attention with no q/k norm or gate, a GELU
    ``Mlp``, no layer scale, no hooks on it or anything inside it.
    """
    if type(block) not in (Block, FusedBlock) or has_hooks(*block.modules()):
        return False
    attn, mlp = block.attn, block.mlp
    if type(attn) is not Attention or type(mlp) is not Mlp or not attn.fused_attn:
        return False  # fused_attn False asks for timm's explicit softmax(q k^T) v: leave it to timm
    if not all(type(norm) is nn.LayerNorm for norm in (block.norm1, block.norm2)):
        return False
    plain_parts = (
        attn.q_norm,
        attn.k_norm,
        getattr(attn, "norm", None),
        block.ls1,
        block.ls2,
        mlp.norm,
    )
    if not all(_is_identity(part) for part in plain_parts) or getattr(attn, "gate", None) is not None:
        return False
    if not isinstance(mlp.act, nn.GELU) or mlp.act.approximate != "none":
        return False
    return all(type(layer) is nn.Linear for layer in (attn.qkv, attn.proj, mlp.fc1, mlp.fc2))


def _layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _residual_base(x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A new tensor holding ``x + bias``: the accumulator a projection's GEMM adds into."""
    return x + bias if bias is not None else x.clone()


def fused_block_forward(block: Block, x: torch.Tensor, chunk_tokens: int = MLP_CHUNK_TOKENS) -> torch.Tensor:
    """``block(x)`` for ``x`` of shape ``(B, N, D)``, computed with fewer passes over memory.

    Callers check ``can_fuse_block(block)`` first, and call it outside autograd and autocast.
    ``x`` itself is never modified, so earlier block outputs that were kept stay valid.

    Args:
        block: a timm ``Block``.
        x: tokens ``(B, N, D)``.
        chunk_tokens: at most this many rows of the flattened ``(B*N, D)`` tokens go through the
            MLP at once; the rows are split into equal chunks.

    Returns:
        The block's output ``(B, N, D)``; it matches ``block(x)`` to float round-off (the bias is
        added before instead of after the GEMM).
    """
    batch, count, dim = x.shape
    if batch * count == 0:
        return x.clone()
    attn, mlp = block.attn, block.mlp
    heads = attn.num_heads
    head_dim = attn.qkv.out_features // (3 * heads)

    qkv = F.linear(_layer_norm(block.norm1, x), attn.qkv.weight, attn.qkv.bias)
    # one copy to (3, B, heads, N, head_dim): PyTorch's CPU flash kernel runs faster on contiguous heads
    # (ViT-L at 2305 tokens, bf16: 0.166 s a layer with the copy against 0.191 s on the strided view)
    q, k, v = qkv.view(batch, count, 3, heads, head_dim).permute(2, 0, 3, 1, 4).contiguous().unbind(0)
    mixed = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)  # (B, heads, N, head_dim)
    del q, k, v, qkv
    mixed = mixed.transpose(1, 2).reshape(batch * count, heads * head_dim)
    out = _residual_base(x.reshape(batch * count, dim), attn.proj.bias)
    torch.addmm(out, mixed, attn.proj.weight.t(), out=out)  # out = x + proj(mixed)
    del mixed

    fc2_weight = mlp.fc2.weight.t()
    total = batch * count
    chunk = math.ceil(total / math.ceil(total / max(chunk_tokens, 1)))
    for start in range(0, total, chunk):
        rows = out[start : start + chunk]  # a contiguous block of rows: a view, written in place
        hidden = F.linear(_layer_norm(block.norm2, rows), mlp.fc1.weight, mlp.fc1.bias)
        torch.ops.aten.gelu_(hidden)
        if mlp.fc2.bias is not None:
            rows.add_(mlp.fc2.bias)
        torch.addmm(rows, hidden, fc2_weight, out=rows)  # rows = rows + fc2(gelu(fc1(norm2(rows))))
    return out.view(batch, count, dim)


class FusedBlock(Block):
    """A timm ``Block`` whose inference forward is :func:`fused_block_forward`.

    Same parameters and ``state_dict`` keys as the ``Block`` it replaces. In training mode, with
    autograd on, or under autocast, it runs timm's forward unchanged (the fused path writes in
    place and would break autograd, and autocast would not see its GEMMs).
    """

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if (
            args
            or kwargs
            or self.training
            or torch.is_grad_enabled()
            or torch.is_autocast_enabled(x.device.type)
            or x.dim() != 3
        ):
            return super().forward(x, *args, **kwargs)
        return fused_block_forward(self, x)
