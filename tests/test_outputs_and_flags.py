"""What the commands write never collides and refusals leave nothing behind (issue 22, class 1);
every numeric flag is checked before any model loads (class 7).

Every command runs in this process through ``setr.cli.main``; a guard makes any model load that a
refusal should have prevented fail the test.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import setr
from setr.cli import main
from setr.devices import available_devices
from setr.export import ExportedNetwork
from setr.export.metadata import export_metadata
from setr.inference import Predictor, collect_images
from setr.lock import LOCK_NAME, FolderLockedError, folder_lock

from .conftest import small
from .test_datasets import write_image, write_mask

ROOT = Path(__file__).resolve().parents[1]
MODEL = "setr_pup_vitl_cityscapes"
TINY = small(depth=2, decode_index=1, aux_indices=[])
TINY_ARGS = [arg for k, v in TINY.items() for arg in ("--override", f"{k}={json.dumps(v)}")]
PROTOCOL = ["--crop", "32", "--stride", "21", "--protocol", "test_scale=null", "--device", "cpu"]


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    path = tmp_path / "tiny.pth"
    torch.save(setr.create_model(MODEL, **TINY).state_dict(), path)
    return path


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if a model is built: the refusal must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the refusal")

    monkeypatch.setattr(setr, "create_model", refuse)


def one_error_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------- class 1: what we write never collides
def test_predict_never_maps_two_inputs_to_one_output(tmp_path, checkpoint, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pixels = {
        name: write_image(tmp_path / name, 20, 24, seed=i)
        for i, name in enumerate(["ca/x.png", "cb/x.png", "cc/x_1.png"])
    }
    assert (
        main(
            [
                "predict",
                *pixels,
                "--out",
                "out",
                "--model",
                MODEL,
                "--checkpoint",
                str(checkpoint),
                *TINY_ARGS,
                *PROTOCOL,
            ]
        )
        == 0
    )
    assert "wrote 3 segmentations" in capsys.readouterr().err
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.png"))
    assert written == ["ca/x.png", "cb/x.png", "x_1.png"]  # directly given files that share a stem keep their folders
    predictor = Predictor(
        setr.create_model(MODEL, checkpoint_path=checkpoint, **TINY), crop=32, stride=21, test_scale=None
    )
    for source, mask in (("ca/x.png", "ca/x.png"), ("cb/x.png", "cb/x.png"), ("cc/x_1.png", "x_1.png")):
        expected = predictor(pixels[source]).mask.numpy()
        np.testing.assert_array_equal(np.array(Image.open(tmp_path / "out" / mask)), expected)


def test_a_renamed_duplicate_never_takes_another_images_name(tmp_path):
    folder = tmp_path / "photos"
    for name in ("x.png", "x_1.png", "X_2.png"):
        write_image(folder / name, 4, 4)
    single = tmp_path / "x.jpg"
    write_image(single, 4, 4)
    found, _ = collect_images([folder, single, single])
    stems = [str(stem) for _, stem in found]
    assert stems == ["X_2", "x", "x_1", "x_3", "x_4"]  # X_2 is taken too, on a case-insensitive disk
    assert len({s.casefold() for s in stems}) == len(stems)


def test_a_second_run_on_the_same_out_is_refused_and_a_dead_runs_lock_is_taken_over(tmp_path, checkpoint, capsys):
    write_image(tmp_path / "a.png", 20, 24)
    out = tmp_path / "out"
    out.mkdir()
    argv = ["predict", str(tmp_path / "a.png"), "--out", str(out), "--model", MODEL, "--checkpoint", str(checkpoint)]
    argv += [*TINY_ARGS, *PROTOCOL]
    with folder_lock(out) as lock:  # a run going on in this folder
        record = json.loads(lock.read_text())
        assert record["pid"] == os.getpid()
        assert main(argv) == 2
        one_error_line(capsys, f"--out {out} is in use by another setr run (pid {os.getpid()}", LOCK_NAME)
        assert lock.exists() and not (out / "a.png").exists()
    assert not lock.exists()
    dead = _dead_pid()
    lock.write_text(json.dumps({**record, "pid": dead}))  # a run killed with kill -9
    assert main(argv) == 0
    assert (out / "a.png").exists() and not lock.exists()


def test_the_lock_goes_on_error_and_on_ctrl_c(tmp_path):
    for error in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(error)), folder_lock(tmp_path) as lock:
            assert lock.exists()
            raise error
        assert not lock.exists()
    with folder_lock(tmp_path), pytest.raises(FolderLockedError, match="in use by another setr run"):
        with folder_lock(tmp_path):
            pass


def test_finetune_refuses_to_replace_a_model_folder_without_overwrite(tmp_path, capsys, no_model_load):
    finetune = load_example("finetune")
    source = tmp_path / "model"
    source.mkdir()
    (source / "config.json").write_text("{}")
    for out in (source, tmp_path / "other"):  # its own source, or any model folder
        out.mkdir(exist_ok=True)
        (out / "config.json").write_text("{}")
        with pytest.raises(SystemExit) as exit_:
            finetune.main(["--data", str(tmp_path / "data"), "--model", str(source), "--out", str(out)])
        assert exit_.value.code == 2
        one_error_line(capsys, f"--out {out} holds a model", "--overwrite")
        assert (out / "config.json").read_text() == "{}"


def _refusals(tmp: Path, checkpoint: Path) -> dict[str, list[str]]:
    image = str(tmp / "a.png")
    return {
        "predict, unknown model": ["predict", image, "--out", f"{tmp}/new/o", "--model", "setr_pup_vitl_nowhere"],
        "predict, absent device": ["predict", image, "--out", f"{tmp}/new/o", "--model", MODEL, "--device", "mps"],
        "predict, bad checkpoint": ["predict", image, "--out", f"{tmp}/new/o", "--model", MODEL, "--checkpoint", image],
        "eval, unknown model": [
            "eval",
            "--dataset",
            "folder",
            "--root",
            f"{tmp}/data",
            "--json",
            f"{tmp}/new/r.json",
            "--model",
            "setr_pup_vitl_nowhere",
        ],  # fmt: skip
        "export, unknown model": ["export", "--out", f"{tmp}/new/m.onnx", "--model", "setr_pup_vitl_nowhere"],
        "convert, unreadable checkpoint": ["convert", "--out", f"{tmp}/new/o", "--model", MODEL, "--checkpoint", image],
    }


@pytest.mark.parametrize("case", list(_refusals(Path("."), Path("."))))
def test_a_refusal_leaves_no_out_folder_behind(tmp_path, checkpoint, capsys, case):
    if case == "predict, absent device" and "mps" in available_devices():
        pytest.skip("this machine has an MPS device")
    write_image(tmp_path / "a.png", 8, 8)
    write_image(tmp_path / "data" / "images" / "a.png", 8, 8)
    write_mask(tmp_path / "data" / "masks" / "a.png", np.zeros((8, 8)))
    (tmp_path / "data" / "classes.txt").write_text("\n".join(f"c{i}" for i in range(19)))
    assert main(_refusals(tmp_path, checkpoint)[case]) == 2
    one_error_line(capsys)
    assert not (tmp_path / "new").exists()


def test_skip_existing_continues_an_interrupted_run(tmp_path, checkpoint, capsys):
    for i in range(3):
        write_image(tmp_path / "in" / f"{i}.png", 20, 24, seed=i)
    out = tmp_path / "out"
    argv = ["predict", str(tmp_path / "in"), "--out", str(out), "--model", MODEL, "--checkpoint", str(checkpoint)]
    argv += [*TINY_ARGS, *PROTOCOL]
    assert main(argv) == 0
    (out / "1_overlay.jpg").unlink()  # interrupted between the mask and the overlay of 1
    (out / "2.png").unlink()
    (out / "2_overlay.jpg").unlink()  # 2 never started
    finished = (out / "0.png").stat().st_mtime_ns, (out / "0_overlay.jpg").stat().st_mtime_ns
    capsys.readouterr()
    assert main([*argv, "--skip-existing"]) == 0
    summary = capsys.readouterr().err.splitlines()[-1]
    assert summary == f"wrote 2 segmentations to {out}; skipped 1 whose outputs were already there (--skip-existing)"
    assert ((out / "0.png").stat().st_mtime_ns, (out / "0_overlay.jpg").stat().st_mtime_ns) == finished
    assert sorted(p.name for p in out.iterdir()) == [f"{i}{s}" for i in range(3) for s in (".png", "_overlay.jpg")]
    assert main([*argv, "--skip-existing"]) == 0  # all done: nothing to load, nothing to write
    assert (
        capsys.readouterr().err.splitlines()[-1]
        == f"wrote 0 segmentations to {out}; skipped 3 whose outputs were already there (--skip-existing)"
    )


# ----------------------------------------------------------- class 7: numbers checked before work
@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (
            ["eval", "--dataset", "folder", "--root", "{tmp}", "--model", MODEL, "--limit", "0"],
            "--limit: must be a positive integer",
        ),
        (
            ["eval", "--dataset", "folder", "--root", "{tmp}", "--model", MODEL, "--limit", "-3"],
            "--limit: must be a positive integer",
        ),
        (
            ["eval", "--dataset", "folder", "--root", "{tmp}", "--model", MODEL, "--workers", "-1"],
            "--workers: must be 0 or a positive",
        ),
        (
            ["predict", "{tmp}/a.png", "--out", "{tmp}/o", "--model", MODEL, "--alpha", "1.5"],
            "--alpha: must be a number from 0 to 1",
        ),
        (
            ["predict", "{tmp}/a.png", "--out", "{tmp}/o", "--model", MODEL, "--alpha", "-0.1"],
            "--alpha: must be a number from 0 to 1",
        ),
        (
            ["predict", "{tmp}/a.png", "--out", "{tmp}/o", "--model", MODEL, "--alpha", "nan"],
            "--alpha: expected a finite number",
        ),
        (
            ["predict", "{tmp}/a.png", "--out", "{tmp}/o", "--model", MODEL, "--protocol", "short_side=0"],
            "short_side must be a positive integer",
        ),
        (
            ["predict", "{tmp}/a.png", "--out", "{tmp}/o", "--model", MODEL, "--protocol", "test_scale=[2048,0]"],
            "test_scale must be",
        ),
        (
            ["predict", "{tmp}/a.png", "--out", "{tmp}/o", "--model", MODEL, "--protocol", "ms_ratios=[]"],
            "ms_ratios must be",
        ),
        (
            ["predict", "{tmp}/a.png", "--out", "{tmp}/o", "--model", MODEL, "--protocol", "crop=-32"],
            "crop must be a positive",
        ),
        (
            ["predict", "{tmp}/a.png", "--out", "{tmp}/o", "--model", MODEL, "--crop", "0"],
            "--crop: must be a positive integer",
        ),
        (
            ["predict", "{tmp}/a.png", "--out", "{tmp}/o", "--model", MODEL, "--batch-size", "0"],
            "batch_size must be >= 1",
        ),
        (["export", "--out", "{tmp}/m.onnx", "--model", MODEL, "--batch", "0"], "--batch: must be a positive integer"),
    ],
)
def test_numeric_flags_are_refused_in_one_line_before_any_model_loads(tmp_path, capsys, no_model_load, argv, needle):
    write_image(tmp_path / "a.png", 8, 8)
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    assert one_error_line(capsys, needle).startswith("setr: error: ")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("script", "argv", "needle"),
    [
        ("finetune", ["--iters", "0"], "--iters: must be a positive integer"),
        ("finetune", ["--accum-steps", "0"], "--accum-steps: must be a positive integer"),
        ("finetune", ["--lr=-1e-4"], "--lr: must be a positive number"),
        ("finetune", ["--device", "cuda:7"], "devices here"),
        ("train", ["--iters", "0"], "--iters: must be a positive integer"),
        ("train", ["--accum-steps", "0"], "--accum-steps: must be a positive integer"),
        ("train", ["--batch-size=-8"], "--batch-size: must be a positive integer"),
        ("train", ["--workers=-1"], "--workers: must be 0 or a positive integer"),
        ("train", ["--eval-interval", "0"], "--eval-interval: must be a positive integer"),
    ],
)
def test_example_scripts_check_their_numbers_first(tmp_path, capsys, no_model_load, script, argv, needle):
    module = load_example(script)
    parse = module.main if script == "finetune" else module.parse_args
    extra = ["--data", str(tmp_path), "--out", str(tmp_path / "o")] if script == "finetune" else []
    with pytest.raises(SystemExit) as exit_:
        parse([*extra, *argv])
    assert exit_.value.code == 2
    one_error_line(capsys, needle)


def test_an_absent_device_names_the_devices_here_and_leaves_no_out(tmp_path, capsys, no_model_load):
    if "mps" in available_devices():
        pytest.skip("this machine has an MPS device")
    write_image(tmp_path / "a.png", 8, 8)
    assert (
        main(["predict", str(tmp_path / "a.png"), "--out", str(tmp_path / "o"), "--model", MODEL, "--device", "mps"])
        == 2
    )
    one_error_line(
        capsys, "--device mps: this machine has no MPS device; devices here: " + ", ".join(available_devices())
    )
    assert not (tmp_path / "o").exists()


def test_an_export_used_at_another_size_skips_that_image_only(tmp_path, monkeypatch, capsys):
    model = setr.create_model(MODEL, **TINY).eval()
    exported = ExportedNetwork(tmp_path / "m.onnx", model, export_metadata(model, "onnx", False, (1, 3, 32, 32)))
    monkeypatch.setattr("setr.cli.predict.load_model", lambda args, precision: exported)
    write_image(tmp_path / "in" / "fits.png", 32, 32, seed=1)
    write_image(tmp_path / "in" / "other.png", 20, 24, seed=2)
    out = tmp_path / "out"
    argv = ["predict", str(tmp_path / "in"), "--out", str(out), "--exported", str(tmp_path / "m.onnx")]
    assert main([*argv, "--mode", "whole", "--protocol", "test_scale=null", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"skipped {tmp_path / 'in' / 'other.png'}: m.onnx was exported for 32x32 images only" in err
    assert "wrote 1 segmentations" in err and "1 inputs failed" in err
    assert sorted(p.name for p in out.iterdir()) == ["fits.png", "fits_overlay.jpg"]


def test_eval_refuses_a_json_that_is_a_folder_before_the_evaluation(tmp_path, capsys, no_model_load):
    root = tmp_path / "data"
    write_image(root / "images" / "a.png", 8, 8)
    write_mask(root / "masks" / "a.png", np.zeros((8, 8)))
    (root / "classes.txt").write_text("a\nb\n")
    folder = tmp_path / "results"
    folder.mkdir()
    argv = ["eval", "--dataset", "folder", "--root", str(root), "--model", MODEL, "--json", str(folder), "--force"]
    assert main(argv) == 2
    one_error_line(capsys, f"--json {folder} is a folder")
    assert list(folder.iterdir()) == []


def _dead_pid() -> int:
    """A pid no process has now."""
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except OSError:
            pass
        pid -= 1
