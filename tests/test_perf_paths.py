"""The heads' fast paths (channels-last convolutions, BatchNorm folded in eval) equal the plain ones."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from setr import SETR
from setr.models._ops import ConvBNReLU, tokens_to_map

from .conftest import HEADS, tiny_kwargs

_spec = importlib.util.spec_from_file_location(
    "setr_bench_reference", Path(__file__).resolve().parents[1] / "benchmarks" / "_reference.py"
)
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)


def randomise_norms(module: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics and affine parameters, so a wrong fold shows."""
    generator = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=generator))
            m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            m.weight.data.copy_(torch.randn(n, generator=generator))
            m.bias.data.copy_(torch.randn(n, generator=generator))


def plain(block: ConvBNReLU, x: torch.Tensor) -> torch.Tensor:
    return F.relu(block.bn(block.conv(x.contiguous())))


@pytest.mark.parametrize("kernel", [1, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_eval_folds_batchnorm_exactly(kernel, bias):
    block = ConvBNReLU(8, 16, kernel, bias=bias).eval()
    randomise_norms(block)
    x = torch.randn(2, 8, 12, 10)
    with torch.no_grad():
        fast = block(x)
        expected = plain(block, x)
    assert fast.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast, expected, atol=1e-5, rtol=1e-5)


def test_eval_fold_passes_gradients_like_the_plain_path():
    block = ConvBNReLU(4, 6, 3).eval()
    randomise_norms(block)
    x = torch.randn(1, 4, 9, 9, requires_grad=True)
    grads = []
    for fn in (block, lambda t: plain(block, t)):
        block.zero_grad()
        x.grad = None
        fn(x).square().sum().backward()
        grads.append([x.grad.clone()] + [p.grad.clone() for p in block.parameters()])
    for fast, expected in zip(*grads):
        torch.testing.assert_close(fast, expected, atol=1e-4, rtol=1e-4)


def test_training_mode_matches_plain_path_and_updates_statistics():
    fast = ConvBNReLU(4, 6, 3).train()
    slow = ConvBNReLU(4, 6, 3).train()
    slow.load_state_dict(fast.state_dict())
    x = torch.randn(2, 4, 7, 7)
    out_fast, out_slow = fast(x), plain(slow, x)
    torch.testing.assert_close(out_fast, out_slow, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast.bn.running_mean, slow.bn.running_mean)
    torch.testing.assert_close(fast.bn.running_var, slow.bn.running_var)
    out_fast.sum().backward()
    out_slow.sum().backward()
    torch.testing.assert_close(fast.conv.weight.grad, slow.conv.weight.grad, atol=1e-4, rtol=1e-4)


def test_hooks_on_children_still_fire():
    block = ConvBNReLU(4, 6, 3).eval()
    seen = []
    block.conv.register_forward_hook(lambda m, i, o: seen.append("conv"))
    block.bn.register_forward_hook(lambda m, i, o: seen.append("bn"))
    with torch.no_grad():
        block(torch.randn(1, 4, 5, 5))
    assert seen == ["conv", "bn"]


def test_tokens_to_map_is_a_channels_last_view():
    tokens = torch.randn(2, 6 * 5, 8)
    fmap = tokens_to_map(tokens, (6, 5))
    assert fmap.data_ptr() == tokens.data_ptr()
    assert fmap.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fmap, tokens.transpose(1, 2).reshape(2, 8, 6, 5).contiguous())


@pytest.mark.parametrize("head", HEADS)
def test_decode_heads_equal_the_plain_nchw_path(head):
    model = SETR(**tiny_kwargs(head)).eval()
    randomise_norms(model)
    x = torch.randn(2, 3, 48, 80)
    with torch.no_grad():
        logits = model(x)
        if head == "mla":
            tokens, grid = model.encoder(x, model.config["mla_indices"])
            expected = reference.plain_mla(model.neck, model.decode_head, tokens, grid, (48, 80))
        else:
            features, grid = model.forward_features(x)
            expected = reference.plain_up_head(model.decode_head, features[0], grid, (48, 80))
    assert logits.is_contiguous()  # NCHW logits, whatever the heads ran in
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
