"""One run per output folder: :func:`folder_lock` holds a lock file with the owner's pid.

A second run that asks for the same folder while the first is alive is refused
(:class:`FolderLockedError`); a lock whose process no longer runs (a run killed with ``kill -9``,
a machine that rebooted) is taken over. The lock is removed when the holder's ``with`` block ends,
whether it ends normally, on an error or on Ctrl-C. Whether a process runs is judged as for stale
stagings (:func:`setr.files.process_may_run`).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from .files import HOST, process_may_run

__all__ = ["LOCK_NAME", "FolderLockedError", "folder_lock"]

LOCK_NAME = ".setr.lock"


class FolderLockedError(OSError):
    """Another live run holds the folder; the message names it, its pid and the lock file."""


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "--out") -> Iterator[Path]:
    """Hold ``folder`` (which must exist) for this process while the ``with`` block runs.

    Args:
        folder: the output folder.
        what: how the user named it, for the message (``"--out"``).

    Yields:
        The lock file, ``folder/.setr.lock``, holding ``{"pid": ..., "host": ...}``.

    Raises:
        FolderLockedError: a live process (or one of another host) holds the folder.
    """
    lock = Path(folder) / LOCK_NAME
    _acquire(lock, what)
    try:
        yield lock
    finally:
        with contextlib.suppress(OSError):
            if _owner(lock) == (os.getpid(), HOST):
                lock.unlink()


def _acquire(lock: Path, what: str) -> None:
    mine = json.dumps({"pid": os.getpid(), "host": HOST}).encode()
    for _ in range(100):  # each turn either takes the lock or removes a stale one
        try:
            handle = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            owner = _owner(lock)
            if owner is None or process_may_run(*owner):
                pid = "unknown" if owner is None else owner[0]
                raise FolderLockedError(
                    f"{what} {lock.parent} is in use by another setr run (pid {pid}, lock file {lock}): wait for it "
                    "to finish or choose another folder; if no run is going, remove the lock file"
                ) from None
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()  # the holder is gone
            continue
        try:
            os.write(handle, mine)
        finally:
            os.close(handle)
        return
    raise FolderLockedError(f"{what} {lock.parent}: could not take the lock file {lock}")


def _owner(lock: Path) -> tuple[int, str] | None:
    """``(pid, host)`` of a lock file; ``None`` when it cannot be read (being written: treated as held)."""
    try:
        record = json.loads(lock.read_text(encoding="utf-8"))
        return int(record["pid"]), str(record["host"])
    except FileNotFoundError:
        return (-1, HOST)  # gone meanwhile: free
    except (OSError, ValueError, KeyError, TypeError):
        return None
