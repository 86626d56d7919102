"""PaddleViT ``.pdparams``: the official golden MLA network, re-saved in PaddleViT's layout, gives
the golden logits; every PaddleViT key layout maps; nothing but arrays is unpickled."""

from __future__ import annotations

import pickle
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

import setr
from setr import SETR
from setr.convert import ConversionError, convert_state_dict, detect_format, read_pdparams

from .conftest import TINY, TINY_TAPS, golden_state_dict, load_golden, read_key_list, tiny_kwargs

_LINEAR = re.compile(r".*\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.weight")
_OFFICIAL_TO_PADDLE = [
    (r"backbone\.pos_embed", "encoder.transformer.embeddings.position_embeddings"),
    (r"backbone\.cls_token", "encoder.transformer.embeddings.cls_token"),
    (r"backbone\.patch_embed\.proj\.", "encoder.transformer.embeddings.patch_embeddings."),
    (r"backbone\.blocks\.(\d+)\.norm1\.", r"encoder.transformer.encoder.layers.\1.attn_norm."),
    (r"backbone\.blocks\.(\d+)\.norm2\.", r"encoder.transformer.encoder.layers.\1.mlp_norm."),
    (r"backbone\.blocks\.(\d+)\.attn\.proj\.", r"encoder.transformer.encoder.layers.\1.attn.out."),
    (r"backbone\.blocks\.(\d+)\.", r"encoder.transformer.encoder.layers.\1."),
    (r"backbone\.", "encoder."),
    (r"decode_head\.mlahead\.", "decoder."),
    (r"decode_head\.", "decoder."),
]


def official_to_paddlevit(official: dict[str, torch.Tensor]) -> dict[str, object]:
    """Test-side export of an official SETR state dict in PaddleViT's ``paddle.save`` layout."""
    out: dict[str, object] = {}
    for key, value in official.items():
        if ".conv_seg." in key or key.endswith("num_batches_tracked"):
            continue  # PaddleViT builds no dead conv_seg and keeps no BN counter
        array = value.numpy()
        if _LINEAR.fullmatch(key):
            array = array.T  # paddle Linear weights are [in, out]
        aux = re.fullmatch(r"auxiliary_head\.(\d+)\.(.+)", key)
        if aux:
            new = f"aux_decoder{int(aux.group(1)) + 2}.{aux.group(2)}"
        else:
            new = key
            for pattern, target in _OFFICIAL_TO_PADDLE:
                new, hits = re.subn(f"^{pattern}", target, new)
                if hits:
                    break
        new = new.replace(".running_mean", "._mean").replace(".running_var", "._variance")
        out[new] = np.ascontiguousarray(array)
    out["StructuredToParameterName@@"] = {k: f"param_{i}" for i, k in enumerate(out)}
    return out


def _write(obj: object, path: Path, protocol: int = 4) -> Path:
    with path.open("wb") as file:
        pickle.dump(obj, file, protocol=protocol)
    return path


def test_golden_mla_logits_through_pdparams(tmp_path):
    tensors, _ = load_golden("mla")
    paddle = official_to_paddlevit(golden_state_dict(tensors))
    assert "aux_decoder5.aux.weight" in paddle  # built by PaddleViT, never run
    path = _write(paddle, tmp_path / "SETR_MLA.pdparams")
    model = setr.create_model(
        "setr_mla_vitl_cityscapes.paddlevit_80k", checkpoint_path=path, aux_heads=True, **TINY, **TINY_TAPS["mla"]
    ).eval()
    assert model.info.loaded_from["format"] == "paddlevit"
    assert model.config.class_token is False and model.config.aux_indices == (0, 1, 2)
    with torch.no_grad():
        logits, aux = model(tensors["input"], return_aux=True)
    torch.testing.assert_close(logits, tensors["seg_logits"], atol=1e-5, rtol=0)
    assert len(aux) == 3
    for i, out in enumerate(aux):
        torch.testing.assert_close(out, tensors[f"aux_logits.{i}"], atol=1e-5, rtol=0)


def test_protocol_2_pickle_and_ordered_dict_read_the_same(tmp_path):
    tensors, _ = load_golden("mla")
    paddle = official_to_paddlevit(golden_state_dict(tensors))
    new = read_pdparams(_write(paddle, tmp_path / "p4.pdparams"))
    old = read_pdparams(_write(OrderedDict(paddle), tmp_path / "p2.pdparams", protocol=2))
    assert new.keys() == old.keys() and "StructuredToParameterName@@" not in new
    for key in new:
        assert torch.equal(new[key], old[key])


def test_big_parameters_split_by_paddle_are_joined(tmp_path):
    weight = np.arange(24, dtype=np.float32).reshape(4, 6)
    flat = weight.reshape(-1)
    saved = {
        "w@@.0": flat[:10],
        "w@@.1": flat[10:],
        "UnpackBigParamInfor@@": {"w": {"OriginShape": [4, 6], "slices": ["w@@.0", "w@@.1"]}},
        "StructuredToParameterName@@": {"w": "linear_0.w_0"},
    }
    tensors = read_pdparams(_write(saved, tmp_path / "split.pdparams", protocol=2))
    assert list(tensors) == ["w"] and torch.equal(tensors["w"], torch.from_numpy(weight))


def _export_ours_to_paddlevit(model: SETR) -> dict[str, np.ndarray]:
    """Test-side export of our Naive/PUP model (class_token=False) to PaddleViT names."""
    nc = len(model.config.decode_up_scales)
    out: dict[str, np.ndarray] = {}
    rules = [
        (r"encoder\.pos_embed", "encoder.transformer.embeddings.position_embeddings"),
        (r"encoder\.patch_embed\.proj\.", "encoder.transformer.embeddings.patch_embeddings."),
        (r"encoder\.blocks\.(\d+)\.norm1\.", r"encoder.transformer.encoder.layers.\1.attn_norm."),
        (r"encoder\.blocks\.(\d+)\.norm2\.", r"encoder.transformer.encoder.layers.\1.mlp_norm."),
        (r"encoder\.blocks\.(\d+)\.attn\.proj\.", r"encoder.transformer.encoder.layers.\1.attn.out."),
        (r"encoder\.blocks\.(\d+)\.", r"encoder.transformer.encoder.layers.\1."),
        (r"(decode_head|aux_heads\.\d+)\.convs\.(\d+)\.conv\.", r"\1.conv_\2."),
        (r"(decode_head|aux_heads\.\d+)\.convs\.(\d+)\.bn\.", r"\1.syncbn_fc_\2."),
        (r"decode_head\.classifier\.", f"decode_head.conv_{nc}."),
        (r"aux_heads\.(\d+)\.classifier\.", "aux_heads.\\1.conv_1."),
    ]
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        array = value.numpy()
        if _LINEAR.fullmatch(key):
            array = array.T
        if key == "encoder.pos_embed":  # PaddleViT stores a cls slot, then drops the token
            array = np.concatenate([np.full_like(array[:, :1], 7.0), array], axis=1)
        for pattern, target in rules:
            key = re.sub(f"^{pattern}", target, key)
        key = re.sub(r"^decode_head\.", "decoder.", key)
        key = re.sub(r"^aux_heads\.(\d+)\.", lambda m: f"aux_decoder{int(m.group(1)) + 2}.", key)
        key = key.replace(".running_mean", "._mean").replace(".running_var", "._variance")
        out[key] = np.ascontiguousarray(array)
    out["encoder.transformer.embeddings.cls_token"] = np.ones((1, 1, model.config.embed_dim), np.float32)
    return out


@pytest.mark.parametrize("head", ["naive", "pup"])
def test_naive_and_pup_round_trip_exactly(head, tmp_path):
    source = SETR(**tiny_kwargs(head, class_token=False)).eval()
    with torch.no_grad():  # random BN statistics so a swapped mean/var would show
        for module in source.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 1.5)
    path = _write(_export_ours_to_paddlevit(source), tmp_path / f"{head}.pdparams")
    tag = f"setr_{head}_vitl_cityscapes.paddlevit_80k"
    loaded = setr.create_model(tag, checkpoint_path=path, **tiny_kwargs(head, aux_heads=True)).eval()
    for key, value in source.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(loaded.state_dict()[key], value), key
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), source(x), atol=0, rtol=0)


@pytest.mark.parametrize("head", ["naive", "pup", "mla"])
def test_full_size_key_layouts_map_onto_the_zoo_models(head):
    source = read_key_list(f"paddlevit_setr_keys_{head}_vitl_cityscapes.txt")
    with torch.device("meta"):
        model = setr.create_model(f"setr_{head}_vitl_cityscapes.paddlevit_80k", aux_heads=True)
    assert detect_format(source) == "paddlevit"
    converted = convert_state_dict(source, model)
    assert converted.keys() == model.state_dict().keys()
    qkv = "encoder.transformer.encoder.layers.0.attn.qkv.weight"
    assert converted["encoder.blocks.0.attn.qkv.weight"].shape == source[qkv].shape[::-1]


def test_official_topology_with_cls_token_is_refused(tmp_path):
    tensors, _ = load_golden("mla")
    path = _write(official_to_paddlevit(golden_state_dict(tensors)), tmp_path / "mla.pdparams")
    with pytest.raises(ConversionError, match=r"mla\.pdparams: .*drops the cls token.*class_token=False"):
        setr.create_model("setr_pup_vitl_cityscapes", checkpoint_path=path, **TINY, aux_heads=True)


def test_mla_with_four_aux_heads_keeps_aux_decoder5(tmp_path):
    tensors, _ = load_golden("mla")
    paddle = official_to_paddlevit(golden_state_dict(tensors))
    model = SETR(**tiny_kwargs("mla"))  # the official 4 aux heads
    converted = convert_state_dict(read_pdparams(_write(paddle, tmp_path / "m.pdparams")), model)
    assert np.array_equal(converted["aux_heads.3.classifier.weight"].numpy(), paddle["aux_decoder5.aux.weight"])
