"""The output folder of a training run: never silently replaced."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..files import OutputExistsError, check_output_dir

__all__ = ["RUN_FILES", "prepare_run_dir"]

RUN_FILES = ("last.pt", "log.csv", "metrics.json", "final", "predictions", "tb")
"""What a training run writes into its output folder."""

_BEFORE_FIRST_CHECKPOINT = {"log.csv", "metrics.json", "tb"}
"""The run files a run writes before its first ``last.pt``: ``--resume auto`` starts afresh over them."""


def prepare_run_dir(
    out: str | os.PathLike, resume: str | None = None, overwrite: bool = False, is_main: bool = True
) -> Path | None:
    """Check (and create) the run folder before anything expensive; returns the checkpoint to resume.

    Args:
        out: the run's output folder.
        resume: a training checkpoint, or ``"auto"``: ``out/last.pt`` when it exists, else a fresh
            start (over the log of a run stopped before its first checkpoint, if any).
        overwrite: start afresh in a folder that holds a run: its run files are deleted first.
        is_main: only the main process deletes.

    Raises:
        OutputExistsError: ``out`` holds a run and neither ``resume`` nor ``overwrite`` was given, or
            ``resume="auto"`` finds a run without ``last.pt`` that got past its first checkpoint.
        FileNotFoundError: ``resume`` names a checkpoint that does not exist.
        PermissionError, NotADirectoryError: ``out`` cannot be written.
    """
    out = check_output_dir(out, "--out")
    if resume and overwrite:
        raise ValueError("--resume continues a run and --overwrite starts afresh: give one of them")
    found = [name for name in RUN_FILES if (out / name).exists()]
    if resume == "auto":
        if (out / "last.pt").is_file():
            return out / "last.pt"
        if not set(found) <= _BEFORE_FIRST_CHECKPOINT:
            raise OutputExistsError(
                f"--out {out} holds a run without its last.pt ({', '.join(found)}): there is nothing to resume; "
                "pass --overwrite to replace it, or choose another --out"
            )
        # a run stopped (killed, a full disk) before its first last.pt: it starts again over its log
        resume, overwrite = None, True
    if resume:
        if not Path(resume).is_file():
            raise FileNotFoundError(f"--resume {resume}: no such checkpoint (pass an earlier run's last.pt, or auto)")
        return Path(resume)
    if found and not overwrite:
        raise OutputExistsError(
            f"--out {out} holds a run ({', '.join(found)}): pass --resume auto to continue it, --overwrite to "
            "replace it, or choose another --out"
        )
    if found and is_main:
        for name in found:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return None
