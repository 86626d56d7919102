"""One battery over every name of ``setr.list_models()``, each built at a tiny size: forward shapes,
the config round trip, the ``save_pretrained`` / ``from_pretrained`` round trip, and the optimised
model equal to the plain one (decode and auxiliary heads)."""

from __future__ import annotations

import json

import pytest
import torch

import setr
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
    assert len(aux) == len(model.config["aux_indices"]) > 0
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
