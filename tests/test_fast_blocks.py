"""The fused inference path of a ViT block computes what the timm block computes, is swapped in only
where it may, and falls back to timm's forward where it would differ."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from timm.models.vision_transformer import Block

from setr import SETR
from setr.fast import FusedBlock, can_fuse_block, fused_block_forward, optimize_for_inference

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
        assert can_fuse_block(block)
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


def test_fused_block_is_refused_where_it_would_differ() -> None:
    block = make_block()
    assert can_fuse_block(block)
    handle = block.mlp.fc1.register_forward_hook(lambda *args: None)
    assert not can_fuse_block(block), "a hook on a submodule would be skipped"
    handle.remove()
    assert can_fuse_block(block)
    block.attn.fused_attn = False
    assert not can_fuse_block(block), "explicit attention was asked for"
    block.attn.fused_attn = True
    assert not can_fuse_block(make_block(init_values=0.1)), "layer scale"
    assert not can_fuse_block(make_block(act_layer=partial(torch.nn.GELU, approximate="tanh")))


def _fused(block: Block) -> Block:
    block.__class__ = FusedBlock
    return block


def test_fused_block_runs_timm_forward_where_the_fused_path_would_differ(monkeypatch) -> None:
    """Training mode, autograd and autocast take timm's forward (the fused path is never entered)."""
    block = _fused(make_block())
    x = torch.randn(2, 5, 32)
    calls = []
    monkeypatch.setattr("setr.fast.blocks.fused_block_forward", lambda *a, **k: calls.append(1) or a[1])
    block.train()
    torch.manual_seed(0)
    block(x)
    block.eval()
    out = block(x.requires_grad_())  # autograd on
    out.sum().backward()  # would fail on the in-place GEMMs
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        block(x.detach())  # autocast must see the GEMMs
    assert calls == []
    with torch.no_grad():
        block(x.detach())
    assert calls == [1]


def test_fused_block_keeps_timm_state_dict_and_handles_an_empty_batch() -> None:
    plain = make_block()
    fused = _fused(make_block())
    assert list(fused.state_dict()) == list(plain.state_dict())
    with torch.no_grad():
        assert fused(torch.randn(0, 5, 32)).shape == (0, 5, 32)


@pytest.mark.parametrize("head", HEADS)
def test_encoder_fused_inference_matches_plain_blocks(head: str) -> None:
    """Whole model, every tapped block output (MLA taps all four, PUP's aux taps repeat one): kept
    block outputs must survive the later blocks unchanged."""
    torch.manual_seed(0)
    model = SETR(**tiny_kwargs(head)).eval()
    fast = optimize_for_inference(model)
    assert all(type(b) is FusedBlock for b in fast.encoder.blocks)
    assert all(type(b) is Block for b in model.encoder.blocks)
    x = torch.randn(2, 3, 64, 80)
    with torch.inference_mode():
        fused_main, fused_aux = fast(x, return_aux=True)
        plain_main, plain_aux = model(x, return_aux=True)
    torch.testing.assert_close(fused_main, plain_main, rtol=1e-5, atol=1e-5)
    assert len(fused_aux) == len(plain_aux) > 0
    for got, expected in zip(fused_aux, plain_aux):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
