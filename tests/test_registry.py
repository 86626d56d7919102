"""Names: listing, resolution of tags, helpful errors, dataset configs."""

from __future__ import annotations

import pytest
import torch

import setr
from setr.data.meta import DATASETS
from setr.zoo import ZOO as ZOO_TABLE

ARCHS = [f"setr_{h}_{b}" for h in ("naive", "pup", "mla") for b in ("vitl", "vitb", "deitb")]
ZOO = [f"setr_{h}_vitl_{d}" for h in ("naive", "pup", "mla") for d in ("cityscapes", "ade20k", "pcontext")]


def test_every_architecture_and_zoo_name_is_listed():
    names = setr.list_models()
    assert set(ARCHS + ZOO + ["setr_naive_vitb_cityscapes"]) == set(names)
    assert setr.list_models("*mla*vitl*") == sorted(n for n in names if "mla" in n and "vitl" in n)


def test_every_released_checkpoint_has_a_tagged_name():
    tagged = setr.list_models(pretrained=True)
    # the seed (PaddleViT) table has 13 rows, the official README 15 released files, mmseg 7
    by_source = {s: [n for n in tagged if f".{s}_" in n] for s in ("official", "paddlevit", "mmseg")}
    assert {k: len(v) for k, v in by_source.items()} == {"official": 15, "paddlevit": 13, "mmseg": 7}
    assert len(tagged) == 35
    for name in tagged:
        assert setr.is_model(name)


@pytest.mark.parametrize(
    "name, dataset, crop, classes",
    [
        ("setr_pup_vitl_cityscapes", "cityscapes", 768, 19),
        ("setr_naive_vitl_ade20k", "ade20k", 512, 150),
        ("setr_mla_vitl_pcontext", "pcontext", 480, 60),
    ],
)
def test_zoo_names_carry_dataset_configuration(name, dataset, crop, classes):
    with torch.device("meta"):
        model = setr.create_model(name, embed_dim=64, depth=24, num_heads=4)
    assert model.config.img_size == crop and model.config.num_classes == classes
    info = model.info
    assert info.dataset == dataset
    assert len(info.class_names) == classes == len(info.palette)
    assert info.mean == (123.675, 116.28, 103.53) and info.std == (58.395, 57.12, 57.375)
    assert info.protocol.crop == crop
    assert info.protocol.stride == {768: 512, 512: 341, 480: 320}[crop]


def test_bare_zoo_name_resolves_to_its_default_tag():
    with torch.device("meta"):
        model = setr.create_model("setr_mla_vitl_ade20k", embed_dim=64, num_heads=4)
    assert model.info.tag == "official_160k_bs8"
    assert model.info.protocol.ms_ratios == (0.5, 0.75, 1.0)  # official ADE MLA ms config


def test_tag_applies_its_framework_topology():
    with torch.device("meta"):
        mmseg = setr.create_model("setr_pup_vitl_cityscapes.mmseg_80k", embed_dim=64, num_heads=4, aux_heads=True)
        paddle = setr.create_model(
            "setr_mla_vitl_pcontext.paddlevit_80k_bs16", embed_dim=64, num_heads=4, aux_heads=True
        )
    assert mmseg.config.decode_up_scales == (2, 2, 2, 2) and len(mmseg.aux_heads) == 3
    assert mmseg.config.head_conv_bias is False
    assert paddle.config.aux_indices == (0, 1, 2)


def test_overrides_reach_the_constructor():
    model = setr.create_model(
        "setr_naive_vitl", img_size=32, embed_dim=32, depth=6, num_heads=2, num_classes=3,
        decode_index=4, aux_indices=[1, 3],
    )  # fmt: skip
    assert model.config.decode_index == 4 and model.config.aux_indices == (1, 3)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    mla = setr.create_model("setr_mla_vitb", img_size=32, embed_dim=32, depth=6, num_heads=2, mla_indices=[0, 2, 4, 5])
    assert mla.config.mla_indices == (0, 2, 4, 5)


def test_base_variants_use_the_official_taps():
    with torch.device("meta"):
        naive = setr.create_model("setr_naive_vitb", aux_heads=True)
        pup = setr.create_model("setr_pup_deitb", aux_heads=True)
        mla = setr.create_model("setr_mla_deitb")
        assert not setr.create_model("setr_naive_vitb").aux_heads  # only when asked for
    assert (naive.config.decode_index, naive.config.aux_indices) == (11, (2, 5, 8))
    assert (pup.config.decode_index, pup.config.aux_indices) == (11, (4, 7, 9, 11))
    assert mla.config.mla_indices == (2, 5, 8, 11)


@pytest.mark.parametrize(
    "name, suggestion",
    [
        ("setr_pup_vitl_cityscape", "setr_pup_vitl_cityscapes"),
        ("setr_mla_vit_l", "setr_mla_vitl"),
        ("setr_pup_vitl_ade20k.official_80k", "official_160k"),
    ],
)
def test_unknown_names_suggest_the_closest(name, suggestion):
    with pytest.raises(KeyError) as error:
        setr.create_model(name)
    assert suggestion in str(error.value)


def test_architecture_without_weights_refuses_pretrained():
    with pytest.raises(ValueError, match="no released weights"):
        setr.create_model("setr_pup_deitb", pretrained=True)


def test_every_pretrained_name_is_a_registered_zoo_model():
    for name, entry in ZOO_TABLE.items():
        assert name in setr.list_models()
        assert not entry.releases or entry.dataset is not None
    assert set(DATASETS) == {"cityscapes", "ade20k", "pcontext"}


def test_palettes_are_the_official_ones():
    city, ade, pcontext = (DATASETS[d].palette for d in ("cityscapes", "ade20k", "pcontext"))
    assert city[0] == (128, 64, 128) and city[13] == (0, 0, 142)  # road, car
    assert len(ade) == 150 and ade[:3] == ((120, 120, 120), (180, 120, 120), (6, 230, 230))
    assert ade[-1] == (92, 0, 255)
    assert pcontext == ade[:60]


def test_suggestions_ignore_case():
    with pytest.raises(KeyError, match="setr_pup_vitl"):
        setr.create_model("SETR_PUP_VITL")


def test_a_registered_architecture_is_created_listed_and_saved_by_name(tmp_path):
    from setr.zoo import registry

    def my_tiny_setr(**overrides):
        return setr.SETR(**{**dict(head="naive", img_size=32, embed_dim=32, depth=2, num_heads=2), **overrides})

    setr.register_model(my_tiny_setr)
    try:
        assert "my_tiny_setr" in setr.list_models() and setr.is_model("my_tiny_setr")
        model = setr.create_model("my_tiny_setr", num_classes=3)
        assert model.num_classes == 3 and model.info.name == "my_tiny_setr"
        with pytest.raises(ValueError, match="registered twice"):
            setr.register_model(my_tiny_setr)
        clash = lambda **kwargs: None  # noqa: E731
        clash.__name__ = "setr_pup_vitl"  # a zoo name
        with pytest.raises(ValueError, match="registered twice"):
            setr.register_model(clash)
        model.save_pretrained(tmp_path / "mine")
        assert setr.create_model("my_tiny_setr", checkpoint_path=tmp_path / "mine", num_classes=3).num_classes == 3
    finally:
        registry._USER_ENTRYPOINTS.pop("my_tiny_setr", None)
    assert "my_tiny_setr" not in setr.list_models()


def test_model_info_without_building():
    info = setr.model_info("setr_pup_vitl_ade20k.mmseg_160k")
    assert info.dataset == "ade20k" and info.tag == "mmseg_160k" and info.release.source == "mmseg"
    assert len(info.class_names) == 150 and info.protocol.crop == 512 and info.reduce_zero_label
    assert setr.get_dataset_info("ade20k").num_classes == 150
    bare = setr.model_info("setr_pup_vitl")
    assert bare.dataset is None and bare.protocol is None and bare.release is None
    with pytest.raises(KeyError, match="no tag"):
        setr.model_info("setr_pup_vitl_ade20k.official_80k")


def test_names_that_are_not_strings_get_a_type_error():
    for bad in (None, 3, ["setr_pup_vitl"]):
        with pytest.raises(TypeError, match="model name is a string"):
            setr.create_model(bad)
