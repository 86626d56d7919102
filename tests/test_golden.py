"""The official SETR code's own outputs, reproduced through the official-checkpoint converter.

The official model's weights are not stored: ``load_golden`` rebuilds them from the recipe in
``tests/data/golden/README.md``; the stored outputs are the official code's for those weights.
"""

from __future__ import annotations

import pytest
import torch

from setr import SETR
from setr.convert import convert_state_dict

from .conftest import HEADS, golden_state_dict, load_golden, tiny_kwargs


def golden_model(head: str) -> tuple[SETR, dict[str, torch.Tensor]]:
    tensors, meta = load_golden(head)
    kwargs = tiny_kwargs(head)
    if head != "mla":  # the aux taps the official builder received
        kwargs["aux_indices"] = [a["in_index"] for a in meta["model_cfg"]["auxiliary_head"]]
    model = SETR(**kwargs).eval()
    state = convert_state_dict(golden_state_dict(tensors), model, "official")
    model.load_state_dict(state, strict=True)
    return model, tensors


@pytest.mark.parametrize("head", HEADS)
def test_decode_and_aux_logits_match_official(head):
    model, golden = golden_model(head)
    with torch.no_grad():
        logits, aux = model(golden["input"], return_aux=True)
    assert logits.shape == golden["seg_logits"].shape
    torch.testing.assert_close(logits, golden["seg_logits"], atol=1e-5, rtol=0)
    expected_aux = sorted(k for k in golden if k.startswith("aux_logits."))
    assert len(aux) == len(expected_aux)
    for i, out in enumerate(aux):
        torch.testing.assert_close(out, golden[f"aux_logits.{i}"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("head", HEADS)
def test_recipe_builds_every_listed_official_tensor(head):
    tensors, meta = load_golden(head)
    state = golden_state_dict(tensors)
    listed = meta["weights"]["keys"]
    assert list(state) == [key for key, _, _ in listed]
    for key, shape, dtype in listed:
        assert list(state[key].shape) == shape and state[key].dtype == getattr(torch, dtype), key
    assert all(not v.any() for v in state.values() if not v.is_floating_point())


@pytest.mark.parametrize("head", HEADS)
def test_plain_forward_equals_training_forward(head):
    model, golden = golden_model(head)
    with torch.no_grad():
        plain = model(golden["input"])
        with_aux, _ = model(golden["input"], return_aux=True)
    torch.testing.assert_close(plain, with_aux, atol=0, rtol=0)


def test_converter_drops_only_dead_tensors():
    tensors, _ = load_golden("mla")
    source = golden_state_dict(tensors)
    model = SETR(**tiny_kwargs("mla"))
    converted = convert_state_dict(source, model, "official")
    dropped = len(source) - len(converted)
    dead = [k for k in source if ".conv_seg." in k or k == "backbone.cls_token"]
    assert dropped == len(dead) == 2 * 5 + 1
    # pos_embed loses exactly its cls slot; the patch positions are kept bit for bit.
    assert torch.equal(converted["encoder.pos_embed"], source["backbone.pos_embed"][:, 1:])


def test_unmapped_and_mis_shaped_keys_fail_loudly():
    from setr.convert import ConversionError

    tensors, _ = load_golden("pup")
    source = golden_state_dict(tensors)
    model = SETR(**tiny_kwargs("pup"))
    with pytest.raises(ConversionError, match=r"could not be mapped: backbone\.extra_thing"):
        convert_state_dict({**source, "backbone.extra_thing": torch.zeros(1)}, model, "official")
    wrong_classes = SETR(**tiny_kwargs("pup", num_classes=21))
    with pytest.raises(ConversionError, match=r"shape mismatch: .*classifier.*\[19, 256, 1, 1\] vs model \[21"):
        convert_state_dict(source, wrong_classes, "official")
    fewer_aux = SETR(**{**tiny_kwargs("pup"), "aux_indices": [1, 2]})
    with pytest.raises(ConversionError, match=r"not in the model: aux_heads\.2\."):
        convert_state_dict(source, fewer_aux, "official")


@pytest.mark.parametrize("head, class_token", [("pup", False), ("naive", False), ("mla", True)])
def test_a_model_with_the_other_cls_token_handling_is_refused(head, class_token):
    from setr.convert import ConversionError

    tensors, _ = load_golden(head)
    model = SETR(**tiny_kwargs(head, class_token=class_token))
    with pytest.raises(ConversionError, match=f"class_token={class_token}"):
        convert_state_dict(golden_state_dict(tensors), model, "official")
