"""The ``setr`` command line, in-process and through the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import setr
from setr.cli import main
from setr.data.datasets import Cityscapes, FolderDataset
from setr.inference import Predictor, eval_report, eval_table
from setr.metrics import ConfusionMatrix

from .conftest import small
from .test_datasets import cityscapes_tree, write_image, write_mask

TINY = small(depth=2, decode_index=1, aux_indices=[])
MODEL = "setr_pup_vitl_cityscapes"


def tiny_args(checkpoint: Path) -> list[str]:
    args = ["--model", MODEL, "--checkpoint", str(checkpoint), "--device", "cpu", "--crop", "32", "--stride", "21"]
    for key, value in TINY.items():
        args += ["--override", f"{key}={json.dumps(value)}"]
    return args + ["--protocol", "test_scale=null"]


@pytest.fixture
def tiny_checkpoint(tmp_path) -> tuple[setr.SETR, Path]:
    model = setr.create_model(MODEL, **TINY).eval()
    path = tmp_path / "tiny.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_list_shows_the_zoo(capsys):
    assert main(["list", "*ade20k*"]) == 0
    out = capsys.readouterr().out
    assert "setr_pup_vitl_ade20k.official_160k (default)" in out and "cityscapes" not in out
    assert "48.62" in out and "50.09" in out  # reported ss and ms+flip mIoU
    assert main(["list", "--json", "setr_mla_vitl_pcontext.*"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["classes"] for r in rows} == {60} and len(rows) == 4


def test_predict_writes_masks_and_overlays_and_skips_bad_files(tmp_path, tiny_checkpoint, capsys):
    model, checkpoint = tiny_checkpoint
    inputs = tmp_path / "in"
    write_image(inputs / "a.jpg", 40, 70, seed=1)
    write_image(inputs / "nested" / "b.png", 20, 30, seed=2)
    (inputs / "broken.jpg").write_bytes(b"not an image")
    single = tmp_path / "c.png"
    write_image(single, 33, 33, seed=3)
    out = tmp_path / "out"
    status = main(["predict", str(inputs), str(single), "--out", str(out), "--batch-size", "2", *tiny_args(checkpoint)])
    assert status == 1  # one input failed, the others are written
    assert "broken.jpg: cannot read as an image" in capsys.readouterr().err
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["a.png", "a_overlay.jpg", "c.png", "c_overlay.jpg", "nested/b.png", "nested/b_overlay.jpg"]

    predictor = Predictor(model, crop=32, stride=21, test_scale=None)
    for name, source in (("a", inputs / "a.jpg"), ("nested/b", inputs / "nested" / "b.png"), ("c", single)):
        mask = Image.open(out / f"{name}.png")
        assert mask.mode == "P"
        palette = np.array(mask.getpalette()[: 19 * 3]).reshape(19, 3)
        assert palette[13].tolist() == [0, 0, 142]  # Cityscapes "car"
        expected = predictor(str(source)).mask.numpy()
        np.testing.assert_array_equal(np.array(mask), expected)
        assert Image.open(out / f"{name}_overlay.jpg").size == mask.size


def test_predict_ms_flip_and_probabilities(tmp_path, tiny_checkpoint):
    model, checkpoint = tiny_checkpoint
    write_image(tmp_path / "x.png", 24, 40)
    args = ["predict", str(tmp_path / "x.png"), "--out", str(tmp_path / "o"), "--ms-flip", "--save-probs"]
    args += [*tiny_args(checkpoint), "--protocol", "ms_ratios=[1.0, 1.25]", "--no-overlay"]
    assert main(args) == 0
    probs = np.load(tmp_path / "o" / "x_probs.npy")
    expected = Predictor(model, crop=32, stride=21, test_scale=None, ms_ratios=[1.0, 1.25])(
        str(tmp_path / "x.png"), ms_flip=True, return_probs=True
    )
    assert probs.dtype == np.float16 and probs.shape == (19, 24, 40)
    np.testing.assert_allclose(probs, expected.probs.numpy(), atol=1e-3)
    assert not (tmp_path / "o" / "x_overlay.jpg").exists()


def test_eval_on_a_folder_dataset_matches_the_api(tmp_path, tiny_checkpoint, capsys):
    model, checkpoint = tiny_checkpoint
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for i in range(3):
        write_image(root / "images" / f"{i}.png", 24, 36, seed=i)
        write_mask(root / "masks" / f"{i}.png", rng.integers(0, 19, (24, 36)))
    (root / "classes.txt").write_text("\n".join(f"c{i}" for i in range(19)))
    report = tmp_path / "r.json"
    args = ["eval", "--dataset", "folder", "--root", str(root), "--json", str(report), "--workers", "0"]
    assert main([*args, *tiny_args(checkpoint)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(report.read_text())

    dataset = FolderDataset(root)
    predictor = Predictor(model, crop=32, stride=21, test_scale=None)
    metric = ConfusionMatrix(19, class_names=dataset.class_names)
    for sample in dataset:
        metric.update(predictor(sample["image"]).mask, sample["mask"])
    expected = metric.compute()
    assert result["images"] == 3 and result["failed"] == []
    assert result["mIoU"] == pytest.approx(expected["mIoU"]) and result["aAcc"] == pytest.approx(expected["aAcc"])
    assert list(result["per_class"]) == [f"c{i}" for i in range(19)]
    assert result["protocol"]["crop"] == 32 and result["protocol"]["test_scale"] is None
    assert f"mIoU {100 * expected['mIoU']:6.2f}" in printed and "c18" in printed
    # the file is setr.inference.eval_report's dict, the printed table eval_table's rendering of it
    api = eval_report(metric, [], attempted=3, protocol=predictor.protocol, model=MODEL, dataset="folder", root=root)
    assert list(result) == list(api) and list(result["per_class"]) == list(api["per_class"])
    assert result["pixels"] == api["pixels"] == 3 * 24 * 36 and result["split"] is None
    assert result["protocol"] == json.loads(json.dumps(api["protocol"]))
    assert eval_table(result) in printed


def test_eval_skips_a_bad_sample_and_keeps_the_rest(tmp_path, tiny_checkpoint, capsys):
    model, checkpoint = tiny_checkpoint
    cityscapes_tree(tmp_path / "cs")
    bad = next((tmp_path / "cs" / "gtFine").rglob("lindau*_labelIds.png"))
    write_mask(bad, np.zeros((3, 3)))  # the image is 4x2
    report = tmp_path / "r.json"
    args = ["eval", "--dataset", "cityscapes", "--root", str(tmp_path / "cs"), "--json", str(report)]
    assert main([*args, "--workers", "1", *tiny_args(checkpoint)]) == 1
    err = capsys.readouterr().err
    assert "lindau_000001_000019_gtFine_labelIds.png: mask is 3x3 but its image" in err
    result = json.loads(report.read_text())
    assert result["images"] == 1 and len(result["failed"]) == 1
    good = Cityscapes(tmp_path / "cs")[0]
    prediction = Predictor(model, crop=32, stride=21, test_scale=None)(good["image"]).mask
    metric = ConfusionMatrix(19)
    metric.update(prediction, good["mask"])  # 5 labelled pixels: road, sidewalk, car, bicycle, person
    assert result["aAcc"] == pytest.approx(metric.compute()["aAcc"]) and result["dataset"] == "cityscapes"


def test_pcontext59_scores_a_60_class_model_without_background(tmp_path, capsys):
    voc = tmp_path / "VOC2010"
    write_image(voc / "JPEGImages" / "2008_000002.jpg", 16, 16)
    write_mask(voc / "SegmentationClassContext" / "2008_000002.png", np.full((16, 16), 5))
    (voc / "ImageSets" / "SegmentationContext").mkdir(parents=True)
    (voc / "ImageSets" / "SegmentationContext" / "val.txt").write_text("2008_000002\n")
    args = ["eval", "--dataset", "pcontext59", "--root", str(tmp_path), "--json", str(tmp_path / "r.json")]
    args += ["--model", "setr_naive_vitl_pcontext", "--workers", "0", "--device", "cpu", "--crop", "32"]
    args += ["--stride", "32", "--protocol", "short_side=null", "--protocol", "test_scale=null"]
    args += [f"--override={k}={json.dumps(v)}" for k, v in TINY.items()]
    assert main(args) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert len(result["per_class"]) == 59 and "background" not in result["per_class"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["predict", "--model", "setr_pup_vitl_nowhere", "{tmp}/x.png", "--out", "{tmp}/o"], "setr_pup_vitl_nowhere"),
        (["eval", "--model", MODEL, "--dataset", "ade20k", "--root", "{tmp}"], "images/validation folder"),
        (["predict", "--model", MODEL, "{tmp}/none.jpg", "--out", "{tmp}/o"], "no images to segment"),
        (["predict", "--model", MODEL, "{tmp}/x.png", "--out", "{tmp}/o", "--device", "banana"], "--device banana"),
        (["predict", "--model", MODEL, "--checkpoint", "{tmp}/w.pth", "{tmp}", "--out", "o"], "w.pth: checkpoint"),
        (["eval", "--model", MODEL, "--dataset", "folder", "--root", "{tmp}", "--stride", "99"], "missing class list"),
    ],
)
def test_bad_input_gets_a_one_line_error(tmp_path, capsys, argv, message):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    write_image(tmp_path / "x.png", 8, 8)
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("setr: error: ") and message in err[-1]


def test_model_and_dataset_classes_must_agree(tmp_path, capsys):
    root = tmp_path / "data"
    write_image(root / "images" / "a.png", 8, 8)
    write_mask(root / "masks" / "a.png", np.zeros((8, 8)))
    (root / "classes.txt").write_text("a\nb\n")
    args = ["eval", "--dataset", "folder", "--root", str(root), "--model", MODEL]
    args += [f"--override={k}={json.dumps(v)}" for k, v in TINY.items()]
    assert main(args) == 2
    assert "predicts 19 classes but --dataset folder has 2" in capsys.readouterr().err


@pytest.mark.slow
def test_console_script_is_installed():
    script = Path(sys.executable).parent / "setr"
    if not script.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{script} is missing: the package must install the `setr` console script")
        pytest.skip("the `setr` console script is not installed in this environment")
    done = subprocess.run([str(script), "list", "*cityscapes*"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "setr_pup_vitl_cityscapes.official_80k (default)" in done.stdout and "79.34" in done.stdout


@pytest.mark.slow
def test_eval_under_torchrun_splits_images_and_sums_the_metric(tmp_path, tiny_checkpoint):
    _, checkpoint = tiny_checkpoint
    root = tmp_path / "data"
    rng = np.random.default_rng(1)
    for i in range(5):
        write_image(root / "images" / f"{i}.png", 24, 36, seed=i)
        write_mask(root / "masks" / f"{i}.png", rng.integers(0, 19, (24, 36)))
    (root / "classes.txt").write_text("\n".join(f"c{i}" for i in range(19)))
    args = ["eval", "--dataset", "folder", "--root", str(root), "--workers", "0", *tiny_args(checkpoint)]
    assert main([*args, "--json", str(tmp_path / "one.json")]) == 0
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command = [*launcher, "-m", "setr.cli", *args, "--json", str(tmp_path / "two.json")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert (
        two["images"] == 5 and two["mIoU"] == pytest.approx(one["mIoU"]) and two["aAcc"] == pytest.approx(one["aAcc"])
    )


def test_nothing_to_segment_is_one_line_naming_what_was_missing(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "nowhere"), "--model", MODEL, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("setr: error: no images to segment: ")
    assert "nowhere: no such file or folder" in err[0] and not (tmp_path / "o").exists()
