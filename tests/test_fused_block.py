"""The fused CPU inference path of a ViT block computes what the timm block computes, and only runs
where it may."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from timm.models.vision_transformer import Block

from setr import SETR
from setr.models.fused_block import can_fuse_block, fused_block_forward

from .conftest import HEADS, tiny_kwargs


def make_block(seed: int = 0, **kwargs) -> Block:
    """An eval-mode timm block with non-trivial weights everywhere (biases and norms included)."""
    torch.manual_seed(seed)
    options = dict(dim=32, num_heads=4, mlp_ratio=4.0, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6))
    block = Block(**{**options, **kwargs}).eval()
    for name, p in block.named_parameters():
        if p is not None:
            torch.nn.init.normal_(p, mean=1.0 if "norm" in name and name.endswith("weight") else 0.0, std=0.2)
    return block


@pytest.mark.parametrize("qkv_bias", [True, False])
@pytest.mark.parametrize("chunk_tokens", [1, 7, 1024])
def test_fused_block_equals_timm_block(qkv_bias: bool, chunk_tokens: int) -> None:
    block = make_block(qkv_bias=qkv_bias)
    x = torch.randn(3, 23, 32)  # 69 flattened rows: chunks of 7 cross the batch boundary
    before = x.clone()
    with torch.inference_mode():
        assert can_fuse_block(block, x)
        expected = block(x)
        got = fused_block_forward(block, x, chunk_tokens=chunk_tokens)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(x, before), "the block's input must never be written"


def test_fused_block_catches_a_wrong_bias() -> None:
    """The comparison above is sharp enough to see one missing bias term."""
    block = make_block()
    x = torch.randn(1, 9, 32)
    with torch.no_grad():
        expected = block(x)
        block.mlp.fc2.bias.add_(1e-3)
        assert not torch.allclose(fused_block_forward(block, x), expected, rtol=1e-5, atol=1e-5)


def test_fused_path_is_refused_where_it_would_differ() -> None:
    x = torch.randn(1, 5, 32)
    block = make_block()
    with torch.no_grad():
        assert can_fuse_block(block, x)
        block.train()
        assert not can_fuse_block(block, x), "training mode: dropout and drop path are live"
        block.eval()
        handle = block.mlp.fc1.register_forward_hook(lambda *args: None)
        assert not can_fuse_block(block, x), "a hook on a submodule would be skipped"
        handle.remove()
        assert can_fuse_block(block, x)
        block.attn.fused_attn = False
        assert not can_fuse_block(block, x), "explicit attention was asked for"
        block.attn.fused_attn = True
        assert not can_fuse_block(make_block(init_values=0.1), x), "layer scale"
        assert not can_fuse_block(make_block(act_layer=partial(torch.nn.GELU, approximate="tanh")), x)
        assert not can_fuse_block(block, torch.randn(1, 5, 32, device="meta")), "CPU only"
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not can_fuse_block(block, x)
    assert not can_fuse_block(block, x), "autograd is on: the in-place GEMMs are not differentiable"


@pytest.mark.parametrize("head", HEADS)
def test_encoder_fused_inference_matches_plain_blocks(head: str) -> None:
    """Whole model, every tapped block output (MLA taps all four, PUP's aux taps repeat one): kept
    block outputs must survive the later blocks unchanged."""
    torch.manual_seed(0)
    model = SETR(**tiny_kwargs(head)).eval()
    x = torch.randn(2, 3, 64, 80)
    with torch.inference_mode():
        assert all(can_fuse_block(b, torch.zeros(1, 4, 64)) for b in model.encoder.blocks)
        fused_main, fused_aux = model(x, return_aux=True)
        model.encoder.fused_inference = False
        plain_main, plain_aux = model(x, return_aux=True)
    torch.testing.assert_close(fused_main, plain_main, rtol=1e-5, atol=1e-5)
    assert len(fused_aux) == len(plain_aux) > 0
    for got, expected in zip(fused_aux, plain_aux):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
