"""Hub format: save/load round trips, and zoo downloads through hf_hub_download from an offline cache."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import setr
from setr.convert import ConversionError
from setr.zoo import HUB_REVISION, convert_checkpoint, hub_repo_id

from .conftest import build_hub_cache, golden_state_dict, load_golden, small, tiny_kwargs

TINY_PUP = {k: v for k, v in small(depth=2, decode_index=1, aux_indices=[0]).items() if k != "img_size"}
ZOO = "setr_pup_vitl_ade20k"
TAG = "official_160k"


def tiny_zoo_model() -> setr.SETR:
    return setr.create_model(f"{ZOO}.{TAG}", **TINY_PUP).eval()


def test_save_and_load_round_trip(tmp_path):
    model = tiny_zoo_model()
    model.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {
        "config.json", "model.safetensors", "README.md", "preprocessor_config.json"
    }  # fmt: skip
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "setr"  # for transformers' Auto classes (docs/transformers.md)
    assert setr.SETRConfig.from_dict({k: v for k, v in config.items() if k != "info"}) == model.config
    assert config["info"]["dataset"] == "ade20k"
    card = (tmp_path / "README.md").read_text()
    for expected in ("ade20k", "sliding window 512/341", "@inproceedings{zheng2021rethinking"):
        assert expected in card
    assert "48.62" not in card  # random weights built by the release's name do not claim its mIoU
    loaded = setr.from_pretrained(tmp_path, aux_heads=True)
    assert loaded.config == model.config and not loaded.training
    plain = setr.from_pretrained(tmp_path)  # training-only auxiliary heads are kept only when asked for
    assert not plain.aux_heads and plain.config == model.config.replace(aux_indices=())
    assert loaded.info.class_names[:2] == ("wall", "building")
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)


def test_new_class_count_reinitialises_only_the_classifiers(tmp_path):
    model = tiny_zoo_model()
    model.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="re-initialising the classifiers for 4 classes"):
        loaded = setr.from_pretrained(tmp_path, num_classes=4)
    assert loaded.decode_head.classifier.out_channels == 4 and loaded.config.num_classes == 4
    original = model.state_dict()
    for key, value in loaded.state_dict().items():
        if ".classifier." not in key:
            assert torch.equal(value, original[key]), key
    assert loaded.info.class_names is None


def test_broken_folders_are_explained(tmp_path):
    model = tiny_zoo_model()
    with pytest.raises(FileNotFoundError, match="config.json"):
        setr.from_pretrained(tmp_path)
    model.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ConversionError, match="truncated"):
        setr.from_pretrained(tmp_path)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        setr.from_pretrained(tmp_path)


def test_weights_of_another_architecture_are_refused(tmp_path):
    tiny_zoo_model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["depth"] = 3
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConversionError, match="missing from the checkpoint: encoder.blocks.2"):
        setr.from_pretrained(tmp_path)


def run_offline(script: str, cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), HF_HOME=str(cache.parent / "hf_home"))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=300, env=env
    )


@pytest.mark.slow
def test_pretrained_zoo_name_loads_through_hf_hub_download_offline(tmp_path):
    model = tiny_zoo_model()
    folder = tmp_path / "saved"
    model.save_pretrained(folder)
    cache = tmp_path / "hub"
    files = {n: (folder / n).read_bytes() for n in ("config.json", "model.safetensors", "README.md")}
    build_hub_cache(cache, hub_repo_id(ZOO, TAG), HUB_REVISION, files)
    x = torch.randn(1, 3, 48, 64)
    torch.save({"x": x, "y": model(x).detach()}, tmp_path / "io.pt")
    result = run_offline(
        f"""
        import torch, setr
        io = torch.load({str(tmp_path / "io.pt")!r})
        model = setr.create_model("{ZOO}", pretrained=True, **{TINY_PUP!r}).eval()
        assert model.info.loaded_from["hub"] == "{hub_repo_id(ZOO, TAG)}"
        torch.testing.assert_close(model(io["x"]), io["y"], atol=0, rtol=0)
        again = setr.from_pretrained("{hub_repo_id(ZOO, TAG)}", revision="{HUB_REVISION}")
        torch.testing.assert_close(again(io["x"]), io["y"], atol=0, rtol=0)
        for half in (setr.create_model("{ZOO}", pretrained=True, dtype=torch.bfloat16, **{TINY_PUP!r}),
                     setr.from_pretrained("{hub_repo_id(ZOO, TAG)}", revision="{HUB_REVISION}", dtype="bf16")):
            reference = model.state_dict()
            for key, value in half.state_dict().items():  # straight into bf16: the fp32 weights rounded
                expected = reference[key].bfloat16() if reference[key].is_floating_point() else reference[key]
                assert value.dtype == expected.dtype and torch.equal(value, expected), key
        print("OK")
        """,
        cache,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK")


@pytest.mark.slow
def test_unavailable_weights_say_where_to_get_them_and_how_to_convert(tmp_path):
    result = run_offline(
        f"""
        import setr
        try:
            setr.create_model("{ZOO}", pretrained=True, **{TINY_PUP!r})
        except setr.PretrainedWeightsUnavailable as error:
            print(error)
        """,
        tmp_path / "empty_cache",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    message = result.stdout
    assert "drive.google.com/file/d/1hCeiz60ITgVPkWsrKwah8JnwM3G8VVL4" in message
    assert f"setr convert --model {ZOO}.{TAG} --checkpoint" in message
    assert hub_repo_id(ZOO, TAG) in message


@pytest.mark.slow
def test_hub_repo_without_weights_is_explained(tmp_path):
    model = tiny_zoo_model()
    folder = tmp_path / "saved"
    model.save_pretrained(folder)
    cache = tmp_path / "hub"
    build_hub_cache(cache, "someone/setr-broken", "main", {"config.json": (folder / "config.json").read_bytes()})
    result = run_offline(
        """
        import setr
        try:
            setr.from_pretrained("someone/setr-broken")
        except FileNotFoundError as error:
            print(error)
        """,
        cache,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "someone/setr-broken" in result.stdout and "model.safetensors" in result.stdout


def test_convert_official_checkpoint_to_hub_folder(tmp_path):
    tensors, _ = load_golden("naive")
    checkpoint = tmp_path / "official_naive.pth"
    torch.save({"meta": {"iter": 80000}, "state_dict": golden_state_dict(tensors)}, checkpoint)
    overrides = {k: v for k, v in tiny_kwargs("naive").items() if k not in ("head",)}
    convert_checkpoint("setr_naive_vitl_cityscapes.official_80k", checkpoint, tmp_path / "out", **overrides)
    card = (tmp_path / "out" / "README.md").read_text()
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert f"converted by setr from the official checkpoint official_naive.pth (sha256 {digest})" in card
    assert "77.9" in card  # the reported mIoU of the default Cityscapes Naive release
    loaded = setr.from_pretrained(tmp_path / "out")
    with torch.no_grad():
        torch.testing.assert_close(loaded(tensors["input"]), tensors["seg_logits"], atol=1e-5, rtol=0)


def test_safetensors_written_by_save_pretrained_load_as_a_checkpoint(tmp_path):
    model = tiny_zoo_model()
    model.save_pretrained(tmp_path)
    again = setr.create_model(ZOO, checkpoint_path=tmp_path / "model.safetensors", **TINY_PUP)
    assert again.info.loaded_from["format"] == "setr"
    save_file({"junk": torch.zeros(1)}, str(tmp_path / "junk.safetensors"))
    with pytest.raises(ConversionError, match="unrecognised checkpoint layout"):
        setr.create_model(ZOO, checkpoint_path=tmp_path / "junk.safetensors", **TINY_PUP)


def test_setr_convert_command(tmp_path, capsys):
    from setr.cli import main

    tensors, _ = load_golden("mla")
    checkpoint = tmp_path / "mla.pth"
    torch.save({"state_dict": golden_state_dict(tensors)}, checkpoint)
    overrides = [f"--override={k}={json.dumps(v)}" for k, v in tiny_kwargs("mla").items() if k != "head"]
    status = main(["convert", "--model", "setr_mla_vitl_cityscapes.official_80k", "--checkpoint", str(checkpoint),
                   "--out", str(tmp_path / "out"), *overrides])  # fmt: skip
    assert status == 0
    assert "official format" in capsys.readouterr().out
    loaded = setr.from_pretrained(tmp_path / "out")
    with torch.no_grad():
        torch.testing.assert_close(loaded(tensors["input"]), tensors["seg_logits"], atol=1e-5, rtol=0)
    pup_overrides = [o for o in overrides if "mla_indices" not in o]
    status = main(["convert", "--model", "setr_pup_vitl_cityscapes", "--checkpoint", str(checkpoint),
                   "--out", str(tmp_path / "bad"), *pup_overrides])  # fmt: skip
    assert status == 2
    assert "could not be mapped" in capsys.readouterr().err


def test_checkpoints_with_their_own_class_count(tmp_path):
    fine_tuned = setr.create_model(ZOO, num_classes=5, **TINY_PUP)
    path = tmp_path / "fine_tuned.pth"
    torch.save({"state_dict": fine_tuned.state_dict()}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # loads as is: nothing re-initialised
        loaded = setr.create_model(ZOO, checkpoint_path=path, num_classes=5, **TINY_PUP)
    assert loaded.info.class_names is None  # ADE20K's 150 names do not describe 5 classes
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), fine_tuned.eval()(x), atol=0, rtol=0)
    with pytest.raises(ConversionError, match="has 5 classes but the model .* has 150.* num_classes=5"):
        setr.create_model(ZOO, checkpoint_path=path, **TINY_PUP)
    released = tmp_path / "released.pth"
    torch.save({"state_dict": tiny_zoo_model().state_dict()}, released)
    with pytest.warns(UserWarning, match="weights have 150 classes; re-initialising the classifiers for 7"):
        model = setr.create_model(ZOO, checkpoint_path=released, num_classes=7, **TINY_PUP)
    assert model.decode_head.classifier.out_channels == 7


def test_timm_imagenet_weights_initialise_the_encoder_through_create_model(tmp_path):
    from timm.models.vision_transformer import VisionTransformer

    vit = VisionTransformer(img_size=48, patch_size=16, embed_dim=32, depth=2, num_heads=2, num_classes=10)
    path = tmp_path / "vit.pth"
    torch.save(vit.state_dict(), path)
    with pytest.warns(UserWarning, match="initialise the encoder only.*head.weight.*heads are randomly initialised"):
        model = setr.create_model(f"{ZOO}.{TAG}", checkpoint_path=path, **TINY_PUP)
    assert model.info.loaded_from["format"] == "timm"
    assert model.info.release is None  # the release's mIoU does not describe these weights
    torch.testing.assert_close(model.encoder.blocks[1].mlp.fc2.weight, vit.blocks[1].mlp.fc2.weight)
    with pytest.warns(UserWarning):
        converted = convert_checkpoint(f"{ZOO}.{TAG}", path, tmp_path / "out", **TINY_PUP)
    assert "48.62" not in (tmp_path / "out" / "README.md").read_text()
    torch.testing.assert_close(setr.from_pretrained(tmp_path / "out").encoder.pos_embed, converted.encoder.pos_embed)


@pytest.mark.slow
def test_cli_reports_unavailable_weights_in_one_line(tmp_path):
    from PIL import Image

    image = tmp_path / "x.png"
    Image.new("RGB", (40, 30)).save(image)
    script = f"""
    from setr.cli import main
    status = main(["predict", "--model", "{ZOO}", "--pretrained", "--device", "cpu", "{image}", "--out", "{tmp_path / "o"}"])
    print("STATUS", status)
    """
    result = run_offline(script, tmp_path / "empty_cache")
    assert "STATUS 2" in result.stdout, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "setr: error: the weights of setr_pup_vitl_ade20k.official_160k could not be downloaded" in result.stderr


def test_convert_reports_bad_overrides_and_outputs(tmp_path, capsys):
    from setr.cli import main

    folder = tmp_path / "saved"
    tiny_zoo_model().save_pretrained(folder)
    common = ["convert", "--model", f"{ZOO}.{TAG}", "--checkpoint", str(folder)]
    tiny = [f"--override={k}={json.dumps(v)}" for k, v in TINY_PUP.items()]
    assert main([*common, "--out", str(tmp_path / "ok"), *tiny]) == 0  # a save_pretrained folder is accepted
    assert main([*common, "--out", str(tmp_path / "x"), *tiny, "--override=embed_dim=33"]) == 2
    assert "must be divisible" in capsys.readouterr().err
    assert main([*common, "--out", "/proc/not_writable/out", *tiny]) == 2
    assert "setr: error: --out /proc/not_writable/out" in capsys.readouterr().err


def test_from_pretrained_explains_paths_that_are_not_saved_folders(tmp_path):
    tiny_zoo_model().save_pretrained(tmp_path / "saved")
    with pytest.raises(FileNotFoundError, match="is a file: .*checkpoint_path"):
        setr.from_pretrained(tmp_path / "saved" / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        setr.from_pretrained(str(tmp_path / "typo"))
    with pytest.raises(FileNotFoundError, match="no such folder"):
        setr.from_pretrained("./my-setr-typo")


def test_any_class_count_to_any_other_through_an_architecture_name(tmp_path):
    five = setr.create_model("setr_pup_vitl", num_classes=5, img_size=512, **TINY_PUP)
    path = tmp_path / "five.pth"
    torch.save(five.state_dict(), path)
    with pytest.warns(UserWarning, match="weights have 5 classes; re-initialising the classifiers for 7"):
        seven = setr.create_model("setr_pup_vitl", checkpoint_path=path, num_classes=7, img_size=512, **TINY_PUP)
    assert seven.decode_head.classifier.out_channels == 7
    torch.testing.assert_close(seven.encoder.pos_embed, five.encoder.pos_embed)
