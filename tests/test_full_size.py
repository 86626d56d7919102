"""Full-size ViT-L models: built on the meta device (no memory, no forward) and checked against
the official checkpoints' key lists and parameter counts."""

from __future__ import annotations

import pytest
import torch

import setr
from setr.convert import convert_state_dict

from .conftest import read_key_list

# implementations.md section 5.2: official/PaddleViT counts incl. aux heads, without conv_seg.
OFFICIAL_PARAMS = {"naive": 306.54e6, "pup": 319.06e6, "mla": 310.76e6}


def meta_model(name: str, **kwargs) -> setr.SETR:
    with torch.device("meta"):
        return setr.create_model(name, **{"aux_heads": True, **kwargs})


@pytest.mark.parametrize("head", ["naive", "pup", "mla"])
def test_official_vitl_checkpoint_keys_convert_exactly(head):
    source = read_key_list(f"official_setr_keys_{head}_vitl_cityscapes.txt")
    model = meta_model(f"setr_{head}_vitl_cityscapes")
    converted = convert_state_dict(source, model, "official")  # raises on any unmapped/mis-shaped key
    assert set(converted) == set(model.state_dict())
    floats_official = sum(t.numel() for t in source.values())
    dead = sum(t.numel() for k, t in source.items() if ".conv_seg." in k)
    if head == "mla":
        dead += 2 * 1024  # cls token and its position slot, unused by official MLA
    assert sum(t.numel() for t in model.state_dict().values()) == floats_official - dead


@pytest.mark.parametrize("head", ["naive", "pup", "mla"])
def test_parameter_counts_match_the_official_models(head):
    model = meta_model(f"setr_{head}_vitl_cityscapes")
    params = sum(p.numel() for p in model.parameters())
    if head == "mla":
        params += 2 * 1024  # the official count includes the dead cls token and its position slot
    assert params == pytest.approx(OFFICIAL_PARAMS[head], abs=0.005e6)


@pytest.mark.parametrize(
    "name, crop, tokens",
    [
        ("setr_pup_vitl_cityscapes", 768, 2305),
        ("setr_pup_vitl_ade20k", 512, 1025),
        ("setr_pup_vitl_pcontext", 480, 901),
    ],
)
def test_position_embedding_matches_the_crop(name, crop, tokens):
    model = meta_model(name)
    assert model.encoder.pos_embed.shape == (1, tokens, 1024)


def test_inference_only_parameter_counts():
    # implementations.md 5.2: the mmseg 1.2.2 PUP decode path at 768 has 309.59M parameters. That
    # build has no patch-embedding bias (1024) and no bias in its 4 stage convolutions (4 x 256).
    model = meta_model("setr_pup_vitl_cityscapes", aux_indices=[])
    params = sum(p.numel() for p in model.parameters())
    assert params - 1024 - 4 * 256 == pytest.approx(309.59e6, abs=0.005e6)
