"""Writing files without ever losing a user's: atomic replacement, refusal to overwrite, early checks.

Every file ``setr`` writes goes through :func:`atomic_write` (a temporary file in the same folder,
flushed to disk, then renamed over the target), so an interrupted write leaves the old file whole.
Commands check their output locations with :func:`check_output_dir` / :func:`check_new_files`
before any expensive work, and refuse to replace existing files unless told to.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

__all__ = ["OutputExistsError", "atomic_target", "atomic_write", "check_new_files", "check_output_dir"]


class OutputExistsError(FileExistsError):
    """An output would replace a file the user already has; the message says how to allow it."""


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path next to ``path`` for a writer that takes a file name; on success the file
    is synced and renamed over ``path``; on any error it is removed and ``path`` is untouched."""
    path = Path(path)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as file:
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing; on success it is flushed, synced and
    renamed over ``path``; on any error it is removed and ``path`` is untouched.

    Args:
        path: the file to (re)place.
        mode: ``"wb"`` or ``"w"`` (text, UTF-8).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write writes whole files: mode 'wb' or 'w', got {mode!r}")
    path = Path(path)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_output_dir(directory: str | os.PathLike, what: str = "--out") -> Path:
    """Make sure ``directory`` exists (creating it) and can be written, before any expensive work.

    Raises:
        NotADirectoryError: it is a file.
        PermissionError: it cannot be created or written (the message names it and ``what``).
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{what} {directory} is a file, not a folder: give a folder")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise PermissionError(f"{what} {directory} cannot be written ({reason}): choose a writable folder") from None
    return directory


def check_new_files(paths: Iterable[str | os.PathLike], force: bool = False, flag: str = "--force") -> None:
    """Refuse to go on if any of ``paths`` exists, unless ``force``.

    Raises:
        OutputExistsError: naming the first few existing files and ``flag``.
    """
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not force:
        shown = ", ".join(existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        raise OutputExistsError(f"{shown} already exist(s); refusing to overwrite: pass {flag} to replace")
