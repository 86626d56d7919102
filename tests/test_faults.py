"""Faults in the middle of a write (issue 22, class 2): a disk that fills up, a folder that is
read-only. Every writer (save_pretrained, convert_checkpoint, export_model, setr predict, training
checkpoints and logs) ends in one line naming the file and the space it needs, leaves the previous
file byte for byte, and no staging.

Two ways to fill a disk: ``tmpfs``, a small file system of the test's own that fills up for real
(mounted with mount(2); skipped where mounting is not permitted, e.g. not root), and ``fsync``, the
flush to disk failing with ENOSPC as a disk can report it (everywhere). Read-only: ``chmod 0o555``
on the folder, or as root (who ignores permissions) the tmpfs remounted read-only.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import setr
from setr import files, training
from setr.export import export_model
from setr.files import WriteFailed
from setr.training import RunLog, prepare_run_dir, save_training_checkpoint

from .conftest import small

MODEL = "setr_naive_vitl"
TINY = small(depth=2, decode_index=1)
_LIBC = ctypes.CDLL(None, use_errno=True)
_MS_RDONLY, _MS_REMOUNT, _MNT_DETACH = 1, 32, 2


def tiny(seed: int = 0) -> setr.SETR:
    torch.manual_seed(seed)
    return setr.create_model(MODEL, **TINY).eval()


class Disk:
    """A folder whose disk can be filled or made read-only: a tmpfs of its own where mounting is
    permitted, else a plain folder (filled through a failing ``os.fsync``, made read-only by chmod)."""

    def __init__(self, path: Path, mounted: bool, monkeypatch: pytest.MonkeyPatch) -> None:
        self.path, self.mounted, self.monkeypatch = path, mounted, monkeypatch

    def free(self) -> int:
        usage = os.statvfs(self.path)
        return usage.f_bavail * usage.f_frsize

    def fill(self, how: str, leave: int = 0) -> None:
        """Fill the disk: ``tmpfs`` writes a filler file up to ``leave`` bytes free, ``fsync`` makes
        every flush to disk fail with ENOSPC (the data written, but not kept)."""
        if how == "fsync":
            self.monkeypatch.setattr(os, "fsync", _no_space)
            return
        if not self.mounted:
            pytest.skip("no tmpfs could be mounted here (mount needs root): the fsync case fills the disk")
        remaining = self.free() - leave
        block = bytes(1 << 20)
        with open(self.path / "filler", "wb") as handle:
            while remaining > 0:
                remaining -= handle.write(block[: min(remaining, len(block))])
        assert self.free() <= leave

    def read_only(self, folder: Path) -> str:
        """Make ``folder`` read-only; the reason a write then gives."""
        if os.geteuid() != 0:
            folder.chmod(0o555)
            return "permission denied"
        if not self.mounted:
            pytest.skip("root ignores chmod 0o555, and no tmpfs could be mounted to remount read-only")
        flags = _MS_REMOUNT | _MS_RDONLY
        if _LIBC.mount(b"tmpfs", bytes(self.path), b"tmpfs", flags, b"size=16m") != 0:
            pytest.skip(f"cannot remount the tmpfs read-only ({os.strerror(ctypes.get_errno())})")
        return "read-only file system"


def _no_space(fd: int) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def disk(tmp_path, monkeypatch):
    path = tmp_path / "disk"
    path.mkdir()
    mounted = _LIBC.mount(b"tmpfs", bytes(path), b"tmpfs", 0, b"size=16m,mode=0755") == 0
    yield Disk(path, mounted, monkeypatch)
    if mounted:
        _LIBC.umount2(bytes(path), _MNT_DETACH)
        return
    for folder in path.rglob("*"):  # a chmod 0o555 folder could not be cleaned up
        if folder.is_dir():
            folder.chmod(0o755)


def stagings(folder: Path) -> list[str]:
    """What a write left behind: a file staging (``.<name>.<pid>-<host>-<rand>.tmp``) or a folder's
    (``.setr-save-*``)."""
    return sorted(
        p.name
        for p in folder.rglob(".*")
        if files._FILE_STAGING.fullmatch(p.name) or files._FOLDER_STAGING.fullmatch(p.name)
    )


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def check_message(text: str, path: Path, reason: str, sized: bool = True) -> None:
    """One line, naming the file (its folder and name), the reason, what to do and, for a full disk,
    the room there was and (``sized``: where the writer says its size) the room the file needs."""
    assert "\n" not in text and str(path.parent) in text and path.name in text, text
    assert reason in text and "choose another output folder" in text, text
    if reason == "no space left":
        assert " free)" in text and ("needs " in text or not sized), text


# --------------------------------------------------------------------------------- save_pretrained
@pytest.mark.parametrize("how", ["tmpfs", "fsync"])
def test_save_pretrained_on_a_full_disk(disk, how):
    saved = disk.path / "final"
    tiny(0).save_pretrained(saved)
    before = contents(saved)
    disk.fill(how, leave=8192)
    with pytest.raises(WriteFailed) as caught:
        tiny(1).save_pretrained(saved)
    assert caught.value.errno == errno.ENOSPC
    # safetensors' writer fails before a byte is written and setr.convert.write_safetensors gives no size
    check_message(str(caught.value), saved / "model.safetensors", "no space left", sized=how == "fsync")
    assert contents(saved) == before and stagings(disk.path) == []


def test_save_pretrained_to_a_read_only_folder(disk):
    saved = disk.path / "final"
    tiny(0).save_pretrained(saved)
    before = contents(saved)
    reason = disk.read_only(saved)
    with pytest.raises(WriteFailed) as caught:
        tiny(1).save_pretrained(saved)
    check_message(str(caught.value), saved, reason)
    assert contents(saved) == before and stagings(disk.path) == []


def test_convert_checkpoint_on_a_full_disk(disk, tmp_path):
    checkpoint = tmp_path / "original.pth"
    torch.save(tiny(1).state_dict(), checkpoint)
    out = disk.path / "converted"
    tiny(0).save_pretrained(out)
    before = contents(out)
    disk.fill("tmpfs", leave=4096)
    with pytest.raises(WriteFailed) as caught:
        setr.zoo.convert_checkpoint(MODEL, checkpoint, out, force=True, aux_heads=False, **TINY)
    check_message(str(caught.value), out / "model.safetensors", "no space left", sized=False)
    assert contents(out) == before and stagings(disk.path) == []


# ------------------------------------------------------------------------------------------ export
@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
def test_export_on_a_disk_without_room_for_the_weights_is_refused_before_writing(disk, fmt):
    path = disk.path / f"model.{fmt}"
    path.write_bytes(b"the old export")
    disk.fill("tmpfs", leave=64 * 1024)  # the tiny model's weights are 258 kB
    with pytest.raises(WriteFailed) as caught:
        export_model(tiny(), path, fmt, dynamic=False, force=True)
    check_message(str(caught.value), path, "no space left")
    assert "needs about 259 kB, 65.5 kB free" in str(caught.value)
    assert path.read_bytes() == b"the old export" and stagings(disk.path) == []


def test_pt2_export_that_fills_the_disk_midway_is_an_exception_not_an_abort(disk):
    """The weights fit, the archive does not: torch's C++ zip writer used to abort the process."""
    path = disk.path / "model.pt2"
    path.write_bytes(b"the old export")
    disk.fill("tmpfs", leave=320 * 1024)  # the weights (258 kB) fit, the .pt2 (414 kB) does not
    with pytest.raises(WriteFailed) as caught:
        export_model(tiny(), path, "pt2", dynamic=False, force=True)
    check_message(str(caught.value), path, "no space left")
    assert path.read_bytes() == b"the old export" and stagings(disk.path) == []
    disk.path.joinpath("filler").unlink()  # with room again, the same call writes a whole export
    export_model(tiny(), path, "pt2", dynamic=False, force=True)
    assert setr.export.load_exported(path)(torch.zeros(1, 3, 32, 32)).shape == (1, 19, 32, 32)


def test_export_with_a_failing_flush_and_to_a_read_only_folder(disk):
    path = disk.path / "model.onnx"
    path.write_bytes(b"the old export")
    disk.fill("fsync")
    with pytest.raises(WriteFailed) as caught:
        export_model(tiny(), path, "onnx", dynamic=False, force=True)
    check_message(str(caught.value), path, "no space left")
    disk.monkeypatch.undo()
    disk.read_only(disk.path)
    with pytest.raises(PermissionError, match="cannot be written .*choose a writable folder"):  # before tracing
        export_model(tiny(), path, "onnx", dynamic=False, force=True)
    assert path.read_bytes() == b"the old export" and stagings(disk.path) == []


@pytest.mark.slow
def test_aoti_export_that_fills_the_disk_midway(disk):
    path = disk.path / "model.pt2"
    path.write_bytes(b"the old export")
    disk.fill("tmpfs", leave=320 * 1024)  # the compiled library does not fit
    with pytest.raises(WriteFailed) as caught:
        export_model(tiny(), path, "aoti", dynamic=False, force=True)
    check_message(str(caught.value), path, "no space left")
    assert path.read_bytes() == b"the old export" and stagings(disk.path) == []


# ----------------------------------------------------------------------------------------- predict
@pytest.mark.parametrize("how", ["tmpfs", "fsync"])
def test_setr_predict_on_a_full_disk(disk, tmp_path, how, capsys):
    from setr.cli import main

    tiny().save_pretrained(tmp_path / "model")
    photos = tmp_path / "photos"
    photos.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (128, 160, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(photos / "a.png")
    out = disk.path / "seg"
    args = ["predict", str(photos), "--model", str(tmp_path / "model"), "--out", str(out), "--device", "cpu"]
    args += ["--no-overlay", "--save-probs"]  # the probabilities (19 x 128 x 160 float16) are 778 kB
    assert main(args) == 0
    before = contents(out)
    disk.fill(how, leave=128 * 1024)
    capsys.readouterr()
    assert main([*args, "--force"]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("setr: error: "), error
    check_message(error, out / ("a_probs.npy" if how == "tmpfs" else "a.png"), "no space left")
    assert contents(out) == before and stagings(disk.path) == []


# ---------------------------------------------------------------------------------------- training
def _state(seed: int) -> dict:
    model = tiny(seed)
    optimizer = training.build_optimizer(model, 0.01)
    scheduler = training.PolyLR(optimizer, 10)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return training.training_state(model, optimizer, scheduler, scaler, iteration=seed)


@pytest.mark.parametrize("how, leave", [("tmpfs", 8192), ("fsync", 0)])
def test_training_checkpoint_on_a_full_disk(disk, how, leave):
    path = disk.path / "run" / "last.pt"
    save_training_checkpoint(path, _state(2))
    before = path.read_bytes()
    disk.fill(how, leave)
    with pytest.raises(WriteFailed) as caught:
        save_training_checkpoint(path, _state(4))
    check_message(str(caught.value), path, "no space left")
    assert re.search(r"needs (about|more than) 2[0-9][0-9] kB", str(caught.value))  # the tensors' bytes
    assert path.read_bytes() == before and stagings(disk.path) == []
    assert training.load_training_checkpoint(path)["iteration"] == 2


def test_training_checkpoint_to_a_read_only_folder(disk):
    path = disk.path / "run" / "last.pt"
    save_training_checkpoint(path, _state(2))
    before = path.read_bytes()
    reason = disk.read_only(path.parent)
    with pytest.raises(WriteFailed) as caught:
        save_training_checkpoint(path, _state(4))
    check_message(str(caught.value), path, reason)
    assert path.read_bytes() == before and stagings(disk.path) == []


def test_the_run_log_and_metrics_on_a_full_disk_keep_their_rows(disk):
    out = disk.path / "run"
    out.mkdir()
    log = RunLog(out)
    log.log_losses(10, 0.01, {"loss": 1.5, "decode": 1.0, "aux0": 1.25})
    log.update_metrics(iteration=10, mIoU=0.25)
    before = contents(out)
    assert len((out / "log.csv").read_text().splitlines()) == 2
    disk.fill("tmpfs")
    with pytest.raises(WriteFailed) as caught:
        log.log_losses(20, 0.01, {"loss": 1.25, "decode": 0.75, "aux0": 1.0})
    check_message(str(caught.value), out / "log.csv", "no space left")
    with pytest.raises(WriteFailed) as caught:
        log.update_metrics(iteration=20, mIoU=0.5)
    check_message(str(caught.value), out / "metrics.json", "no space left")
    assert contents(out) == before and stagings(disk.path) == []
    disk.path.joinpath("filler").unlink()  # room again: the next row follows the old ones, once
    log.log_losses(30, 0.01, {"loss": 1.0, "decode": 0.5, "aux0": 1.0})
    assert [row.split(",")[0] for row in (out / "log.csv").read_text().splitlines()] == ["iteration", "10", "30"]


def test_resume_auto_after_a_kill_during_the_first_checkpoint(tmp_path):
    """What a kill while writing the first last.pt leaves: a log with rows, metrics, the staging of
    a dead process, no last.pt. ``--resume auto`` starts afresh over it (it used to refuse)."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "log.csv").write_text("iteration,lr,loss\n10,0.01,1.5\n")
    (out / "metrics.json").write_text('{"iteration": 10}')
    dead = _dead_pid()
    staging = out / files._staging_name("last.pt", folder=False, pid=dead)
    staging.write_bytes(b"half a checkpoint")
    (out / "mine.txt").write_text("not a run file")
    assert prepare_run_dir(out, "auto") is None
    assert sorted(p.name for p in out.iterdir()) == sorted(["mine.txt", staging.name])
    RunLog(out)  # the run's first write in the folder clears the dead process's staging
    assert sorted(p.name for p in out.iterdir()) == ["log.csv", "mine.txt"]


def test_resume_auto_refuses_a_finished_run_without_its_checkpoint(tmp_path):
    out = tmp_path / "run"
    (out / "final").mkdir(parents=True)
    (out / "log.csv").write_text("iteration\n")
    with pytest.raises(setr.files.OutputExistsError, match="without its last.pt .*--overwrite"):
        prepare_run_dir(out, "auto")
    assert (out / "final").is_dir() and (out / "log.csv").is_file()


def _dead_pid() -> int:
    """A pid no process of this host has (the highest pids are seldom in use)."""
    limit = int(Path("/proc/sys/kernel/pid_max").read_text()) if Path("/proc/sys/kernel/pid_max").exists() else 32768
    for pid in range(limit - 1, 1, -1):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except OSError:
            continue
    pytest.skip("no free pid")


def test_the_message_says_the_sizes_in_words():
    error = WriteFailed(errno.ENOSPC, Path("/x/y/model.safetensors"), needed=1_234_000_000, free=300_000_000)
    assert str(error) == (
        "no space left on /x/y while writing model.safetensors (needs about 1.23 GB, 300 MB free): free space "
        "there or choose another output folder (--out); nothing was replaced"
    )
    assert isinstance(error, OSError) and error.errno == errno.ENOSPC
    assert "read-only" in str(WriteFailed(errno.EROFS, Path("/x/y")))
    assert json.dumps(str(WriteFailed(errno.EDQUOT, Path("/q/f"), written=5000))).count("5 kB") == 1
