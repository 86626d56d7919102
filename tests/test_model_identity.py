"""A model is what it says it is: no NaN weights, no class count below one, a folder loaded under a
zoo name is that zoo model, a damaged config.json is named, and the model card tells the truth."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import setr
from setr.convert import ConversionError, load_checkpoint
from setr.zoo import convert_checkpoint

from .conftest import small

TINY = small(depth=2, narrow_heads=True)
CITY = "setr_pup_vitl_cityscapes"
ADE = "setr_pup_vitl_ade20k"


def saved(folder: Path, name: str = CITY, **extra) -> Path:
    setr.create_model(name, **{**TINY, **extra}).save_pretrained(folder)
    return folder


def poisoned(folder: Path, key: str = "decode_head.classifier.weight", value: float = float("nan")) -> Path:
    """``folder``'s weights with one value of ``key`` replaced."""
    weights = folder / "model.safetensors"
    state = load_file(weights)
    state[key] = state[key].clone()
    state[key].view(-1)[3] = value
    save_file(state, weights)
    return weights


def one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text, text
    return text


# ------------------------------------------------------------------------------- class 4: NaN / Inf
NAN_MESSAGE = r"tensor 'decode_head\.classifier\.weight' holds NaN/Inf values: the checkpoint is damaged"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused_by_name_on_every_route(tmp_path, value):
    folder = saved(tmp_path / "m")
    weights = poisoned(folder, value=value)
    with pytest.raises(ConversionError, match=NAN_MESSAGE) as error:
        setr.create_model(CITY, checkpoint_path=weights, **TINY)
    assert one_line(error).startswith(str(weights))
    with pytest.raises(ConversionError, match=NAN_MESSAGE):
        setr.create_model(CITY, checkpoint_path=weights, dtype="bf16", **TINY)  # read one tensor at a time
    with pytest.raises(ConversionError, match=NAN_MESSAGE) as error:
        setr.from_pretrained(folder)
    assert str(weights) in one_line(error)
    with pytest.raises(ConversionError, match=NAN_MESSAGE):
        setr.create_model(str(folder))
    with pytest.raises(ConversionError, match=NAN_MESSAGE):
        convert_checkpoint(CITY, weights, tmp_path / "converted", **TINY)
    assert not (tmp_path / "converted" / "model.safetensors").exists()


def test_non_finite_encoder_weight_of_an_official_checkpoint_is_named(tmp_path):
    model = setr.create_model(CITY, **TINY)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["encoder.blocks.1.mlp.fc2.bias"][0] = float("inf")
    with pytest.raises(ConversionError, match=r"tensor 'encoder\.blocks\.1\.mlp\.fc2\.bias' holds NaN/Inf"):
        load_checkpoint(setr.create_model(CITY, **TINY), state)


def test_training_resume_refuses_non_finite_weights(tmp_path):
    from setr.training.checkpoint import restore_training_state, save_training_checkpoint, training_state

    def pieces():
        model = setr.create_model(CITY, **TINY)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        return (
            model,
            optimizer,
            torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0),
            torch.amp.GradScaler("cpu", enabled=False),
        )

    model, optimizer, scheduler, scaler = pieces()
    with torch.no_grad():
        model.decode_head.classifier.weight[0, 0] = float("nan")
    path = save_training_checkpoint(tmp_path / "last.pt", training_state(model, optimizer, scheduler, scaler, 3))
    with pytest.raises(ValueError, match=NAN_MESSAGE) as error:
        restore_training_state(path, *pieces())
    assert one_line(error).startswith(str(path))


def test_finite_weights_whose_sum_overflows_still_load(tmp_path):
    folder = saved(tmp_path / "m")
    weights = folder / "model.safetensors"
    state = load_file(weights)
    state["decode_head.classifier.bias"] = torch.full_like(state["decode_head.classifier.bias"], 3e38)
    save_file(state, weights)
    model = setr.create_model(CITY, checkpoint_path=weights, **TINY)
    assert torch.isfinite(model.decode_head.classifier.bias).all()


# ------------------------------------------------------------------------------- class 4: num_classes
@pytest.mark.parametrize("classes", [0, -1])
def test_num_classes_below_one_is_refused_on_every_route_before_loading(tmp_path, monkeypatch, classes):
    folder = saved(tmp_path / "m")

    def no_hub(*args, **kwargs):
        raise AssertionError("the Hub was asked")

    monkeypatch.setattr("setr.models.hub_mixin.hf_hub_download", no_hub)
    monkeypatch.setattr("setr.zoo.hub.hf_hub_download", no_hub)
    model = setr.create_model(CITY, **TINY)
    routes = {
        "by name": lambda: setr.create_model(CITY, num_classes=classes),
        "folder": lambda: setr.from_pretrained(folder, num_classes=classes),
        "folder as name": lambda: setr.create_model(str(folder), num_classes=classes),
        "checkpoint folder": lambda: setr.create_model(CITY, checkpoint_path=folder, num_classes=classes, **TINY),
        "checkpoint file": lambda: setr.create_model(
            CITY, checkpoint_path=folder / "model.safetensors", num_classes=classes, **TINY
        ),
        "pretrained": lambda: setr.create_model(CITY, pretrained=True, num_classes=classes),
        "hub repo": lambda: setr.from_pretrained("someone/some-model", num_classes=classes),
        "reset_classifier": lambda: model.reset_classifier(classes),
    }
    for route, call in routes.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(ValueError, match="num_classes must be at least 1") as error:
                call()
        assert not caught, f"{route}: {[str(w.message) for w in caught]}"  # refused before any weight was read
        one_line(error)
    assert model.num_classes == 19


# ------------------------------------------------------------------------------- class 5: identity
def test_a_folder_of_another_zoo_model_is_refused_naming_both(tmp_path):
    city = saved(tmp_path / "city")
    with pytest.raises(ValueError) as error:
        setr.create_model(ADE, checkpoint_path=city, **TINY)
    text = one_line(error)
    assert f"{city} holds {CITY} (cityscapes), not {ADE} (19 classes vs 150)" in text
    assert f"create_model('{city}')" in text and "num_classes=150" in text


def test_a_folder_loads_under_its_own_name_its_architecture_or_with_new_classes(tmp_path):
    city = saved(tmp_path / "city")
    assert setr.create_model(CITY, checkpoint_path=city).info.name == CITY  # the folder brings its encoder size
    assert setr.create_model("setr_pup_vitl", checkpoint_path=city, **TINY).num_classes == 19
    with pytest.warns(UserWarning, match="re-initialising the classifiers for 150 classes"):
        model = setr.create_model(ADE, checkpoint_path=city, num_classes=150, **TINY)
    assert model.num_classes == 150
    converted = convert_checkpoint(CITY, city, tmp_path / "again", **TINY)
    assert converted.num_classes == 19
    with pytest.raises(ValueError, match="19 classes vs 150"):
        convert_checkpoint(ADE, city, tmp_path / "wrong", **TINY)


@pytest.mark.parametrize(
    "text, says",
    [
        ("[1, 2]", "holds a JSON list, not an object"),
        ('"setr"', "holds a JSON str, not an object"),
        ('{"head": "pup", "num_cl', "not valid JSON"),
        ("", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not a JSON file"),
    ],
)
def test_a_damaged_config_json_is_one_line_naming_the_file(tmp_path, text, says):
    folder = saved(tmp_path / "m")
    config = folder / "config.json"
    config.write_bytes(text if isinstance(text, bytes) else text.encode())
    for call in (
        lambda: setr.from_pretrained(folder),
        lambda: setr.create_model(str(folder)),
        lambda: setr.create_model(CITY, checkpoint_path=folder, **TINY),
    ):
        with pytest.raises(ValueError, match=re.escape(f"{config}: ") + ".*" + re.escape(says)) as error:
            call()
        one_line(error)


# ------------------------------------------------------------------------------- class 5: the card
def card_of(folder: Path) -> str:
    return (folder / "README.md").read_text()


def test_card_of_a_model_not_from_a_release_loads_its_folder_and_claims_nothing(tmp_path):
    folder = saved(tmp_path / "scratch", f"{ADE}.official_160k")  # the release's settings, random weights
    card = card_of(folder)
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    assert f'setr.from_pretrained("{folder}")' in snippet and "pretrained=True" not in snippet
    namespace: dict = {}
    exec(snippet, namespace)  # the "Use" snippet loads this very folder
    assert isinstance(namespace["model"], setr.SETR) and namespace["model"].num_classes == 150
    assert "| weights | trained or converted by the user |" in card
    assert "| reported mIoU (single scale / ms+flip) | – |" in card and "48.62" not in card
    assert "| encoder initialisation | not recorded by setr" in card and "ImageNet" not in card
    protocol = json.loads((folder / "config.json").read_text())["info"]["protocol"]
    crop, stride, (long, short) = protocol["crop"], protocol["stride"], protocol["test_scale"]
    assert f"| evaluation protocol | sliding window {crop}/{stride}, test resize {long}x{short} (long x short)" in card


def test_card_protocol_row_without_a_saved_protocol_and_in_whole_mode(tmp_path):
    model = setr.create_model("setr_naive_vitl", **TINY)
    assert model.info.protocol is None
    model.save_pretrained(tmp_path / "plain")
    assert "| evaluation protocol | none saved: setr slides a window of the training crop (32x32)" in card_of(
        tmp_path / "plain"
    )
    city = setr.create_model(CITY, **TINY)
    city.info = city.info.replace(protocol=city.info.protocol.__class__(mode="whole", test_scale=None))
    city.save_pretrained(tmp_path / "whole")
    assert "| evaluation protocol | whole image, no test resize" in card_of(tmp_path / "whole")


def test_card_of_release_weights_names_the_release_and_the_recipe_init(tmp_path):
    model = setr.create_model(f"{CITY}.official_80k", **TINY)
    model.info = model.info.replace(loaded_from={"hub": "setr-pytorch/x", "revision": "v1"})
    model.save_pretrained(tmp_path / "release")
    card = card_of(tmp_path / "release")
    assert f'setr.create_model("{CITY}.official_80k", pretrained=True)' in card
    assert "79.34" in card and "(the official recipe)" in card
