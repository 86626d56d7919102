"""The one atomic writer (setr.files.atomic_staging): modes as ``open()`` gives them under the
umask, for every output (save_pretrained, atomic_write, export); stagings of killed runs cleaned;
an error mid-write leaves the old file byte for byte and no staging."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import setr
from setr import files
from setr.export import export_model
from setr.files import atomic_staging, atomic_target, atomic_write
from setr.models import hub_mixin

from .conftest import small

SAVED = {"config.json", "model.safetensors", "README.md", "preprocessor_config.json"}


def tiny(seed: int = 0) -> setr.SETR:
    torch.manual_seed(seed)
    return setr.create_model("setr_naive_vitl", **small(depth=2, decode_index=1)).eval()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def stagings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*"))


@pytest.fixture
def umask():
    """Set the process umask for one test; the old one comes back after it."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


# ----------------------------------------------------------------------------------- modes
@pytest.mark.parametrize("mask, file_mode, folder_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_every_output_gets_the_mode_open_gives_under_the_umask(tmp_path, umask, mask, file_mode, folder_mode):
    umask(mask)
    model = tiny()
    saved = tmp_path / "runs" / "final"
    model.save_pretrained(saved)
    assert {p.name for p in saved.iterdir()} == SAVED
    assert {name: mode(saved / name) for name in SAVED} == dict.fromkeys(SAVED, file_mode)
    assert mode(saved) == mode(saved.parent) == folder_mode
    with atomic_write(tmp_path / "log.txt", "w") as handle:
        handle.write("row\n")
    with atomic_target(tmp_path / "mask.png") as staged:
        staged.write_bytes(b"png")
    with atomic_staging(tmp_path / "made", folder=True) as staging:
        (staging / "sub").mkdir()
    exported = export_model(model, tmp_path / "exports" / "model.pt2", "pt2", dynamic=False)
    assert [mode(p) for p in (tmp_path / "log.txt", tmp_path / "mask.png", exported)] == [file_mode] * 3
    assert [mode(p) for p in (tmp_path / "made", tmp_path / "made" / "sub", exported.parent)] == [folder_mode] * 3
    assert stagings(tmp_path) == []


def test_replacing_a_file_keeps_its_mode_as_open_would(tmp_path, umask):
    path = tmp_path / "shared.json"
    path.write_text("{}")
    path.chmod(0o640)
    with atomic_write(path, "w") as handle:
        handle.write('{"a": 1}')
    assert mode(path) == 0o640 and path.read_text() == '{"a": 1}'


# ------------------------------------------------------------------------- killed runs
def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_killed_runs_staging_is_cleaned_by_the_next_save_and_a_running_ones_is_not(tmp_path):
    saved = tmp_path / "final"
    saved.mkdir()
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = _dead_pid()
        stale = saved / files._staging_name("", folder=True, pid=dead)
        stale.mkdir()
        (stale / "model.safetensors").write_bytes(b"half a file")
        stale_file = saved / files._staging_name("config.json", folder=False, pid=dead)
        stale_file.write_text("{")
        live = saved / files._staging_name("", folder=True, pid=running.pid)
        live.mkdir()
        elsewhere = saved / files._staging_name("", folder=True, pid=dead).replace(files.HOST, "0123abcd")
        elsewhere.mkdir()  # another host's: its pid means nothing here
        tiny().save_pretrained(saved)
        assert not stale.exists() and not stale_file.exists()
        assert live.is_dir() and elsewhere.is_dir()
        assert {p.name for p in saved.iterdir()} == SAVED | {live.name, elsewhere.name}
        assert setr.from_pretrained(saved).num_classes == tiny().num_classes
    finally:
        running.kill()
        running.wait()


# ----------------------------------------------------------------------- errors mid-write
@pytest.mark.parametrize("writer", ["atomic_write", "atomic_target"])
def test_an_error_mid_write_leaves_the_old_file_byte_for_byte(tmp_path, writer):
    path = tmp_path / "weights.bin"
    old = os.urandom(4096)
    path.write_bytes(old)
    with pytest.raises(RuntimeError, match="killed"):
        if writer == "atomic_write":
            with atomic_write(path) as handle:
                handle.write(b"half of the new")
                raise RuntimeError("killed")
        else:
            with atomic_target(path) as staged:
                staged.write_bytes(b"half of the new")
                raise RuntimeError("killed")
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]


def test_an_error_mid_save_pretrained_leaves_the_old_folder_whole(tmp_path, monkeypatch):
    saved = tmp_path / "final"
    tiny(0).save_pretrained(saved)
    before = {p.name: p.read_bytes() for p in saved.iterdir()}

    def half_written(state_dict, path, metadata=None):
        Path(path).write_bytes(b"half")
        raise OSError("no space left on device")

    monkeypatch.setattr(hub_mixin, "write_safetensors", half_written)
    with pytest.raises(OSError, match="no space left"):
        tiny(1).save_pretrained(saved)
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before
    assert stagings(tmp_path) == []


def test_an_error_mid_export_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "model.pt2"
    path.write_bytes(b"the old export")

    def half_saved(program, destination, **kwargs):
        destination.write(b"half")
        raise RuntimeError("killed")

    monkeypatch.setattr(torch.export, "save", half_saved)
    with pytest.raises(RuntimeError, match="killed"):
        export_model(tiny(), path, "pt2", dynamic=False, force=True)
    assert path.read_bytes() == b"the old export"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt2"]


def _modes_under(folder: Path) -> dict[str, int]:
    """The permission bits of everything under ``folder``, by relative path."""
    return {str(p.relative_to(folder)): mode(p) for p in sorted(folder.rglob("*"))}


def test_setr_predict_writes_masks_and_folders_as_open_would(tmp_path, umask):
    from PIL import Image

    from setr.cli import main

    umask(0o022)
    tiny().save_pretrained(tmp_path / "model")
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (40, 30), (90, 120, 30)).save(tmp_path / "photos" / "a.png")
    assert main(["predict", str(tmp_path / "photos"), "--model", str(tmp_path / "model"), "--out",
                 str(tmp_path / "seg"), "--save-probs", "--device", "cpu"]) == 0  # fmt: skip
    modes = _modes_under(tmp_path / "seg")
    files_written = [name for name in modes if (tmp_path / "seg" / name).is_file()]
    assert len(files_written) >= 3, modes  # the mask, the overlay, the probabilities
    for name, bits in modes.items():
        assert bits == (0o755 if (tmp_path / "seg" / name).is_dir() else 0o644), (name, oct(bits))
    assert mode(tmp_path / "seg") == 0o755 and stagings(tmp_path / "seg") == []


@pytest.mark.slow
def test_examples_train_writes_its_run_as_open_would(tmp_path):
    """examples/train.py's checkpoint, log, metrics, weights and masks under umask 022."""
    root = Path(__file__).resolve().parents[1]
    tiny_model = dict(embed_dim=32, depth=2, num_heads=2, head_channels=16, decode_index=1, aux_indices=[0])
    args = ["--model-kwargs", json.dumps(tiny_model), "--synthetic-train", "8", "--synthetic-val", "2",
            "--scale", "48", "48", "--crop", "32", "--batch-size", "4", "--iters", "2", "--eval-interval", "2",
            "--ckpt-interval", "2", "--num-predictions", "1", "--threads", "1", "--workers", "0"]  # fmt: skip
    result = subprocess.run(
        [sys.executable, str(root / "examples" / "train.py"), *args, "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300, cwd=root, preexec_fn=lambda: os.umask(0o022),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    modes = _modes_under(tmp_path / "run")
    assert {"last.pt", "log.csv", "final/model.safetensors", "final/config.json"} <= set(modes), modes
    for name, bits in modes.items():
        assert bits == (0o755 if (tmp_path / "run" / name).is_dir() else 0o644), (name, oct(bits))
