"""The fast convolutions (channels-last, BatchNorm folded in eval) equal the plain ``conv -> BN -> ReLU``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from setr.fast import ClassifierConv2d, FoldedConvBNReLU, can_fold
from setr.fast.heads import channels_last_map
from setr.models.encoder import tokens_to_map
from setr.models.heads import ConvBNReLU


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


def folded(*args, **kwargs) -> ConvBNReLU:
    block = ConvBNReLU(*args, **kwargs)
    assert can_fold(block)
    block.__class__ = FoldedConvBNReLU
    return block


@pytest.mark.parametrize("kernel", [1, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_eval_folds_batchnorm_exactly(kernel, bias):
    block = folded(8, 16, kernel, bias=bias).eval()
    randomise_norms(block)
    x = torch.randn(2, 8, 12, 10)
    with torch.no_grad():
        fast = block(x)
        expected = plain(block, x)
    assert fast.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast, expected, atol=1e-5, rtol=1e-5)


def test_eval_fold_passes_gradients_like_the_plain_path():
    block = folded(4, 6, 3).eval()
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
    fast = folded(4, 6, 3).train()
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


def test_blocks_with_hooks_or_other_parts_are_not_folded():
    block = ConvBNReLU(4, 6, 3)
    assert can_fold(block)
    handle = block.bn.register_forward_hook(lambda m, i, o: None)
    assert not can_fold(block), "the hook on the BatchNorm would be skipped"
    handle.remove()
    block.bn = torch.nn.BatchNorm2d(6, track_running_stats=False)
    assert not can_fold(block), "no running statistics to fold"
    block = ConvBNReLU(4, 6, 3)
    block.act = torch.nn.GELU()
    assert not can_fold(block)


def test_folding_follows_loaded_weights():
    """The fold is computed from the current parameters, so new weights are picked up."""
    block = folded(4, 6, 3).eval()
    x = torch.randn(1, 4, 6, 6)
    other = ConvBNReLU(4, 6, 3).eval()
    randomise_norms(other, seed=3)
    block.load_state_dict(other.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(block(x), plain(other, x), atol=1e-5, rtol=1e-5)


def test_classifier_conv_returns_nchw_logits_of_the_same_convolution():
    conv = torch.nn.Conv2d(8, 3, 3, padding=1)
    fast = ClassifierConv2d(8, 3, 3, padding=1)
    fast.load_state_dict(conv.state_dict())
    x = torch.randn(2, 8, 5, 7).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        out = fast(x)
        assert out.is_contiguous()
        torch.testing.assert_close(out, conv(x), atol=1e-5, rtol=1e-5)


def test_the_fast_token_map_is_a_channels_last_view_of_the_reference_map():
    tokens = torch.randn(2, 6 * 5, 8)
    view = channels_last_map(tokens, (6, 5))
    assert view.data_ptr() == tokens.data_ptr()
    assert view.is_contiguous(memory_format=torch.channels_last)
    reference = tokens_to_map(tokens, (6, 5))
    assert reference.is_contiguous()  # weight gradients then keep the parameters' strides (DDP)
    assert torch.equal(view, reference)
