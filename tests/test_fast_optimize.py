"""``optimize_for_inference``: the same function and weights, the plain model untouched, and the
plain model left traceable."""

from __future__ import annotations

import pytest
import torch
from timm.models.vision_transformer import Block

from setr import SETR, optimize_for_inference
from setr.fast import ClassifierConv2d, FastSETR, FastUpHead, FoldedConvBNReLU, FusedBlock
from setr.models.heads import ConvBNReLU

from .conftest import HEADS, tiny_kwargs
from .test_fast_convs import randomise_norms


def tiny(head: str) -> SETR:
    torch.manual_seed(0)
    model = SETR(**tiny_kwargs(head)).eval()
    randomise_norms(model)
    return model


def test_the_plain_model_is_left_as_it_was_and_shares_its_weights():
    model = tiny("pup")
    fast = optimize_for_inference(model)
    assert fast is not model
    assert all(type(m) is not FusedBlock for m in model.modules())
    assert all(type(m) in (ConvBNReLU,) for m in model.modules() if isinstance(m, ConvBNReLU))
    assert type(fast.decode_head) is FastUpHead and type(fast.decode_head.classifier) is ClassifierConv2d
    assert all(type(m) is FoldedConvBNReLU for m in fast.modules() if isinstance(m, ConvBNReLU))
    for (name, a), (_, b) in zip(model.state_dict(keep_vars=True).items(), fast.state_dict(keep_vars=True).items()):
        assert a is b, f"{name} is copied, not shared"
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        model.decode_head.classifier.bias.add_(1.0)  # a change to one is a change to both
        torch.testing.assert_close(fast(x), model(x), atol=1e-5, rtol=1e-5)


def test_inplace_and_idempotent():
    model = tiny("naive")
    assert optimize_for_inference(model, inplace=True) is model
    assert type(model.encoder.blocks[0]) is FusedBlock
    again = optimize_for_inference(model, inplace=True)
    assert type(again.encoder.blocks[0]) is FusedBlock and again is model


def test_modules_with_hooks_are_left_plain():
    model = tiny("pup")
    model.encoder.blocks[1].register_forward_hook(lambda *args: None)
    model.decode_head.convs[0].bn.register_forward_hook(lambda *args: None)
    fast = optimize_for_inference(model)
    assert type(fast.encoder.blocks[1]) is Block and type(fast.encoder.blocks[0]) is FusedBlock
    assert type(fast.decode_head.convs[0]) is ConvBNReLU and type(fast.decode_head.convs[1]) is FoldedConvBNReLU


@pytest.mark.parametrize("head", HEADS)
def test_an_optimised_model_trains_like_the_plain_one(head):
    """In training mode every swapped module runs the plain forward: same loss, same gradients."""
    model = tiny(head).train()
    fast = optimize_for_inference(model).train()
    x = torch.randn(2, 3, 32, 32)
    losses, grads = [], []
    for net in (model, fast):
        torch.manual_seed(1)
        net.zero_grad()
        logits, aux = net(x, return_aux=True)
        loss = logits.square().mean() + sum(a.square().mean() for a in aux)
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad.clone() for p in net.parameters()])
    torch.testing.assert_close(losses[0], losses[1], atol=1e-6, rtol=1e-6)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_refuses_what_is_not_a_module():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        optimize_for_inference("setr_pup_vitl")


@pytest.mark.parametrize("head", HEADS)
def test_the_plain_model_traces(head):
    """No branch on device, grad mode or hooks in the reference: torch.jit.trace records it whole
    and the trace computes the same on another input of the same size."""
    model = tiny(head)
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        traced = torch.jit.trace(model, x, check_trace=False)
        other = torch.randn(1, 3, 48, 64)
        torch.testing.assert_close(traced(other), model(other), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size", [(48, 64), (50, 37)])
def test_the_optimised_segmentor_crops_its_padding_as_a_view(size):
    """FastSETR: the same logits as the plain model, read from the head's own output (no second
    copy of the logits), where the reference crop copies; in training, the reference crop."""
    model = tiny("naive")
    fast = optimize_for_inference(model)
    assert type(fast) is FastSETR and type(model) is SETR
    heads = {}
    for name, net in (("plain", model), ("fast", fast)):
        net.decode_head.register_forward_hook(lambda m, a, out, name=name: heads.__setitem__(name, out.data_ptr()))
    x = torch.randn(1, 3, *size)
    with torch.inference_mode():
        plain, quick = model(x), fast(x)
    torch.testing.assert_close(quick, plain, atol=1e-5, rtol=1e-5)
    assert quick.shape[-2:] == size
    assert quick.data_ptr() == heads["fast"] and plain.data_ptr() != heads["plain"]
    fast.train()
    assert fast(x).data_ptr() != heads["fast"]
