"""One battery over every name of ``setr.list_models()``, each built at a tiny size: forward shapes,
backward and an optimiser step, gradient checkpointing equal to plain, ``features_only``, the config
round trip, the ``save_pretrained`` / ``from_pretrained`` round trip, the optimised model equal to the
plain one (decode and auxiliary heads), bf16 within its tolerance, and ``torch.export`` with dynamic
height and width (slow: one export per name)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import setr
from setr.export import export_model, load_exported
from setr.fast import optimize_for_inference

from .test_fast_convs import randomise_norms

TINY_OVERRIDES = dict(img_size=32, embed_dim=32, depth=4, num_heads=2, head_channels=16, mla_channels=16,
                      mla_head_channels=8)  # fmt: skip
NAMES = setr.list_models()


def tiny_model(name: str) -> setr.SETR:
    torch.manual_seed(0)
    model = setr.create_model(name, **TINY_OVERRIDES, aux_heads=True).eval()
    randomise_norms(model)  # non-trivial BatchNorm statistics: a wrong fold shows
    return model


def test_the_battery_covers_every_zoo_name():
    assert len(NAMES) == len(setr.zoo.ZOO) == 19


@pytest.mark.parametrize("name", NAMES)
def test_forward_shapes(name):
    model = tiny_model(name)
    x = torch.randn(2, 3, 40, 56)
    with torch.no_grad():
        logits, aux = model(x, return_aux=True)
    classes = model.num_classes
    assert logits.shape == (2, classes, 40, 56)
    assert len(aux) == len(model.config.aux_indices) > 0
    assert all(a.shape == (2, classes, 40, 56) for a in aux)
    assert model.info.name == name and model.info.architecture == setr.zoo.ZOO[name].architecture


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip(name):
    model = tiny_model(name)
    config = json.loads(json.dumps(model.config.to_dict()))
    rebuilt = setr.SETR(setr.SETRConfig.from_dict(config)).eval()
    assert rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


@pytest.mark.parametrize("name", NAMES)
def test_save_pretrained_round_trip(name, tmp_path):
    model = tiny_model(name)
    model.save_pretrained(tmp_path / "saved")
    loaded = setr.from_pretrained(tmp_path / "saved", aux_heads=True)
    assert loaded.config == model.config
    assert loaded.info == model.info
    x = torch.randn(1, 3, 48, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize("name", NAMES)
def test_optimised_equals_plain(name):
    model = tiny_model(name)
    fast = optimize_for_inference(model)
    assert list(fast.state_dict()) == list(model.state_dict())
    x = torch.randn(2, 3, 40, 72)
    with torch.inference_mode():
        plain_logits, plain_aux = model(x, return_aux=True)
        fast_logits, fast_aux = fast(x, return_aux=True)
    torch.testing.assert_close(fast_logits, plain_logits, atol=1e-5, rtol=1e-5)
    for got, expected in zip(fast_aux, plain_aux, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def _train_step(model: setr.SETR, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The official loss (decode + 0.4 x each auxiliary head), backpropagated; returns the loss."""
    logits, aux = model(x, return_aux=True)
    loss = F.cross_entropy(logits, labels) + sum(0.4 * F.cross_entropy(a, labels) for a in aux)
    loss.backward()
    return loss.detach()


@pytest.mark.parametrize("name", NAMES)
def test_backward_reaches_every_parameter_and_a_step_lowers_the_loss(name):
    model = tiny_model(name).train()
    x, labels = torch.randn(2, 3, 32, 48), torch.randint(0, model.num_classes, (2, 32, 48))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    torch.manual_seed(1)
    before = _train_step(model, x, labels)
    for param_name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), param_name
        assert param.grad.abs().sum() > 0, param_name
    optimizer.step()
    optimizer.zero_grad()
    torch.manual_seed(1)
    after = _train_step(model, x, labels)  # the same batch in the same (train) mode, one step later
    assert after < before


@pytest.mark.parametrize("name", NAMES)
def test_gradient_checkpointing_gives_the_plain_outputs_and_gradients(name):
    plain = tiny_model(name).train()
    checkpointed = tiny_model(name).train()
    checkpointed.set_grad_checkpointing(True)
    assert checkpointed.config.grad_checkpointing and checkpointed.encoder.grad_checkpointing
    x, labels = torch.randn(2, 3, 32, 48), torch.randint(0, plain.num_classes, (2, 32, 48))
    torch.manual_seed(1)
    loss_plain = _train_step(plain, x, labels)
    torch.manual_seed(1)
    loss_checkpointed = _train_step(checkpointed, x, labels)
    torch.testing.assert_close(loss_checkpointed, loss_plain, atol=1e-6, rtol=1e-6)
    grads = dict(checkpointed.named_parameters())
    for param_name, param in plain.named_parameters():
        torch.testing.assert_close(grads[param_name].grad, param.grad, atol=1e-5, rtol=1e-4, msg=param_name)


@pytest.mark.parametrize("name", NAMES)
def test_features_only_returns_the_blocks_the_segmentor_computes(name):
    model = tiny_model(name)
    torch.manual_seed(0)
    backbone = setr.create_model(name, **TINY_OVERRIDES, features_only=True, out_indices=[1, -1]).eval()
    backbone.load_state_dict({k: v for k, v in model.state_dict().items() if k.startswith("encoder.")})
    assert backbone.feature_info.channels() == [32, 32] and backbone.feature_info.reduction() == [16, 16]
    x = torch.randn(2, 3, 40, 56)
    with torch.no_grad():
        features = backbone(x)
        expected = model.forward_intermediates(x, indices=[1, 3], intermediates_only=True)
    assert [f.shape for f in features] == [(2, 32, 3, 4)] * 2
    for got, want in zip(features, expected, strict=True):
        torch.testing.assert_close(got, want, atol=0, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_bf16_stays_within_its_tolerance_of_fp32(name):
    model = tiny_model(name)
    x = torch.randn(2, 3, 40, 56)
    with torch.no_grad():
        reference = model(x)
        logits = optimize_for_inference(model, precision="bf16")(x.bfloat16()).float()
    error = ((logits - reference).abs().max() / reference.abs().max()).item()
    assert error < 3e-2, error
    assert all(p.dtype == torch.float32 for p in model.parameters())


_EXPORTS: dict[str, object] = {}
"""One export per distinct tiny config: several names share one (at tiny widths they differ only in
what the zoo says about weights), and their tiny models are equal weight for weight."""


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_torch_export_with_dynamic_height_and_width(name, tmp_path_factory):
    model = tiny_model(name).drop_aux_heads()
    key = json.dumps(model.config.to_dict(), sort_keys=True)
    if key not in _EXPORTS:
        path = tmp_path_factory.mktemp("export") / "model.pt2"
        export_model(model, path, fmt="pt2", dynamic=True)
        _EXPORTS[key] = (load_exported(path), model.state_dict())
    exported, weights = _EXPORTS[key]
    assert all(torch.equal(value, weights[k]) for k, value in model.state_dict().items())
    for height, width in ((40, 56), (33, 70)):
        x = torch.randn(2, 3, height, width)
        with torch.no_grad():
            torch.testing.assert_close(exported(x), model(x), atol=1e-5, rtol=1e-5)
