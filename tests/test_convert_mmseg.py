"""mmsegmentation SETR checkpoints: logits equal mmseg's own, every released key layout maps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import setr
from setr import SETR
from setr.convert import ConversionError, convert_state_dict, detect_format, load_checkpoint

from .conftest import read_key_list

DATA = Path(__file__).parent / "data"
FIXTURES = ("naive_cityscapes", "naive_ade20k", "pup_cityscapes", "mla_cityscapes")
PATCH_BIAS = "backbone.patch_embed.projection.bias"


def _fixture(name: str) -> tuple[dict[str, torch.Tensor], str, dict]:
    """``(tensors, zoo tag, tiny overrides)`` of ``tests/data/mmseg_<name>_tiny.safetensors``."""
    path = DATA / f"mmseg_{name}_tiny.safetensors"
    with safe_open(str(path), "pt") as file:
        meta = file.metadata()
    return load_file(str(path)), meta["tag"], json.loads(meta["overrides"])


def _mmcv_checkpoint(tensors: dict[str, torch.Tensor], path: Path) -> Path:
    """Write the fixture's weights as an mmcv checkpoint (``meta`` + ``state_dict``), like a release."""
    state = {k[len("state_dict.") :]: v for k, v in tensors.items() if k.startswith("state_dict.")}
    torch.save({"meta": {"mmseg_version": "0.15.0", "CLASSES": ["a", "b"]}, "state_dict": state}, path)
    return path


def _sampled(logits: torch.Tensor, tensors: dict[str, torch.Tensor], prefix: str = "") -> torch.Tensor:
    return logits.index_select(-2, tensors[f"{prefix}rows"]).index_select(-1, tensors[f"{prefix}cols"])


@pytest.mark.parametrize("name", FIXTURES)
def test_logits_equal_mmsegmentation(name, tmp_path):
    tensors, tag, overrides = _fixture(name)
    path = _mmcv_checkpoint(tensors, tmp_path / f"{name}.pth")
    model = setr.create_model(tag, checkpoint_path=path, **overrides, aux_heads=True).eval()
    assert model.info.loaded_from["format"] == "mmseg"

    with torch.no_grad():
        logits, aux = model(tensors["input"], return_aux=True)
        rect = model(tensors["rect.input"])  # a non-crop size: run-time position-embedding resize
    torch.testing.assert_close(_sampled(logits, tensors), tensors["seg_logits"], atol=1e-5, rtol=0)
    torch.testing.assert_close(_sampled(rect, tensors, "rect."), tensors["rect.seg_logits"], atol=1e-5, rtol=0)

    expected_aux = sorted(k for k in tensors if k.startswith("aux_logits."))
    assert len(aux) == len(expected_aux)
    for ours, level in zip(aux, model.config.aux_indices):
        # mmseg's MLA aux head k reads its k-th neck output, which is deepest first.
        k = 3 - level if model.config.head == "mla" else model.config.aux_indices.index(level)
        torch.testing.assert_close(_sampled(ours, tensors), tensors[f"aux_logits.{k}"], atol=1e-5, rtol=0)


def test_dropping_the_patch_bias_changes_the_logits():
    # The mmseg 1.2 pitfall in numbers: loading without the bias is a different network.
    tensors, tag, overrides = _fixture("pup_cityscapes")
    state = {k[len("state_dict.") :]: v for k, v in tensors.items() if k.startswith("state_dict.")}
    model = setr.create_model(tag, **overrides, aux_heads=True).eval()
    converted = convert_state_dict(state, model)
    converted["encoder.patch_embed.proj.bias"] = torch.zeros_like(converted["encoder.patch_embed.proj.bias"])
    model.load_state_dict(converted)
    with torch.no_grad():
        logits = model(tensors["input"])
    assert (_sampled(logits, tensors) - tensors["seg_logits"]).abs().max() > 1e-2


def test_missing_patch_bias_is_refused_with_the_mmseg_12_explanation(tmp_path):
    tensors, tag, overrides = _fixture("naive_cityscapes")
    del tensors[f"state_dict.{PATCH_BIAS}"]
    path = _mmcv_checkpoint(tensors, tmp_path / "resaved_by_mmseg12.pth")
    with pytest.raises(ConversionError, match=r"resaved_by_mmseg12\.pth.*patch_bias=False.*original file"):
        setr.create_model(tag, checkpoint_path=path, **overrides, aux_heads=True)


def test_official_topology_refuses_an_mmseg_checkpoint(tmp_path):
    tensors, _tag, overrides = _fixture("naive_cityscapes")
    path = _mmcv_checkpoint(tensors, tmp_path / "mmseg.pth")
    # The official Naive head has conv biases and upsamples once: not mmseg's network.
    with pytest.raises(ConversionError, match=r"missing from the checkpoint: .*convs\.0\.conv\.bias"):
        setr.create_model("setr_naive_vitl_cityscapes.official_80k", checkpoint_path=path, **overrides, aux_heads=True)


def test_wrong_class_count_names_both_counts(tmp_path):
    tensors, tag, overrides = _fixture("pup_cityscapes")
    path = _mmcv_checkpoint(tensors, tmp_path / "pup.pth")
    model = setr.create_model(tag, num_classes=21, **overrides, aux_heads=True)
    with pytest.raises(ConversionError, match=r"pup\.pth: mmseg checkpoint has 19 classes but the model .* has 21"):
        load_checkpoint(model, path)


def test_unmapped_key_is_listed(tmp_path):
    tensors, tag, overrides = _fixture("mla_cityscapes")
    tensors["state_dict.neck.extra.weight"] = torch.zeros(1)
    path = _mmcv_checkpoint(tensors, tmp_path / "mla.pth")
    with pytest.raises(ConversionError, match=r"could not be mapped: neck\.extra\.weight"):
        setr.create_model(tag, checkpoint_path=path, **overrides, aux_heads=True)


def test_mla_aux_heads_follow_their_levels(tmp_path):
    # A model with aux heads on levels [2, 0] takes mmseg's aux heads 1 and 3, and refuses the others.
    tensors, tag, overrides = _fixture("mla_cityscapes")
    state = {k[len("state_dict.") :]: v for k, v in tensors.items() if k.startswith("state_dict.")}
    model = setr.create_model(tag, **dict(overrides, aux_indices=[2, 0], aux_heads=True))
    with pytest.raises(ConversionError, match=r"auxiliary_head\.0\.conv_seg.*auxiliary_head\.2\.conv_seg"):
        convert_state_dict(state, model)
    kept = {k: v for k, v in state.items() if not k.startswith(("auxiliary_head.0.", "auxiliary_head.2."))}
    converted = convert_state_dict(kept, model)
    assert torch.equal(converted["aux_heads.0.classifier.weight"], state["auxiliary_head.1.conv_seg.weight"])
    assert torch.equal(converted["aux_heads.1.classifier.weight"], state["auxiliary_head.3.conv_seg.weight"])


@pytest.mark.parametrize(
    "keys, tag",
    [
        ("mmseg122_setr_keys_naive_vitl_cityscapes.txt", "setr_naive_vitl_cityscapes.mmseg_80k"),
        ("mmseg122_setr_keys_naive_vitl_ade20k.txt", "setr_naive_vitl_ade20k.mmseg_160k"),
        ("mmseg122_setr_keys_pup_vitl_cityscapes.txt", "setr_pup_vitl_cityscapes.mmseg_80k"),
        ("mmseg122_setr_keys_pup_vitl_ade20k.txt", "setr_pup_vitl_ade20k.mmseg_160k"),
        ("mmseg122_setr_keys_mla_vitl_cityscapes.txt", "setr_mla_vitl_cityscapes.mmseg_80k"),
        ("mmseg122_setr_keys_mla_vitl_ade20k.txt", "setr_mla_vitl_ade20k.mmseg_160k_bs8"),
    ],
)
def test_full_size_key_layouts_map_onto_the_zoo_models(keys, tag):
    # Real ViT-L shapes from mmseg 1.2.2, plus the 0.x patch bias, on the meta device (no memory).
    source = read_key_list(keys)
    source[PATCH_BIAS] = torch.empty(1024, device="meta")
    with torch.device("meta"):
        model = setr.create_model(tag, aux_heads=True)
    assert detect_format(source) == "mmseg"
    converted = convert_state_dict(source, model)
    dropped = len(source) - len(converted)
    assert dropped == (1 if model.config.head == "mla" else 0)  # only MLA's unused cls token
    assert converted.keys() == model.state_dict().keys()


def test_cls_token_is_kept_for_naive_and_dropped_with_its_slot_for_mla():
    naive, _, naive_over = _fixture("naive_cityscapes")
    mla, _, mla_over = _fixture("mla_cityscapes")
    for tensors, overrides, head in ((naive, naive_over, "naive"), (mla, mla_over, "mla")):
        state = {k[len("state_dict.") :]: v for k, v in tensors.items() if k.startswith("state_dict.")}
        aux = {"aux_indices": [0, 1, 2, 3]} if head == "mla" else {}
        converted = convert_state_dict(state, SETR(head=head, **{**_mmseg_topology(head), **aux, **overrides}))
        pos = state["backbone.pos_embed"]
        if head == "mla":
            assert "encoder.cls_token" not in converted
            assert torch.equal(converted["encoder.pos_embed"], pos[:, 1:])
        else:
            assert torch.equal(converted["encoder.cls_token"], state["backbone.cls_token"])
            assert torch.equal(converted["encoder.pos_embed"], pos)


def _mmseg_topology(head: str) -> dict:

    return dict(setr.zoo.ZOO[f"setr_{head}_vitl_cityscapes"].releases["mmseg_80k"].model_overrides)
