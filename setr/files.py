"""Writing files without ever losing a user's: atomic replacement, refusal to overwrite, early checks.

Every file ``setr`` writes goes through :func:`atomic_staging` (directly, or through
:func:`atomic_write` / :func:`atomic_target`): it is written under a temporary name next to its
target, given the mode ``open()`` would give it (the umask is honoured: 0644 under umask 022),
flushed to disk, then renamed over the target, so an interrupted write leaves the old file whole.
A staging left behind by a killed run is removed by the next write to that folder.
Commands check their output locations with :func:`check_output_dir` / :func:`check_new_files`
before any expensive work, and refuse to replace existing files unless told to.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import socket
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

__all__ = [
    "OutputExistsError", "atomic_staging", "atomic_target", "atomic_write", "check_new_files", "check_output_dir",
]  # fmt: skip


class OutputExistsError(FileExistsError):
    """An output would replace a file the user already has; the message says how to allow it."""


# The staging names carry the writer's pid and host, so that a later run can tell a staging of a
# killed process (removed) from one still being written (left alone), even on a shared folder.
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_FILE_STAGING = re.compile(r"\..+\.(?P<pid>[0-9]+)-(?P<host>[0-9a-f]{8})-[0-9a-f]+\.tmp")
_FOLDER_STAGING = re.compile(r"\.setr-save-(?P<pid>[0-9]+)-(?P<host>[0-9a-f]{8})-[0-9a-f]+")
_UMASK_LOCK = threading.Lock()


def _staging_name(target: str, folder: bool, pid: int | None = None) -> str:
    """The name of a staging for ``target`` (a file's name; unused for a folder's staging)."""
    stamp = f"{os.getpid() if pid is None else pid}-{_HOST}-{secrets.token_hex(4)}"
    return f".setr-save-{stamp}" if folder else f".{target}.{stamp}.tmp"


@contextlib.contextmanager
def atomic_staging(path: str | os.PathLike, folder: bool = False) -> Iterator[Path]:
    """Stage a new ``path`` next to it; put it in place only when it is whole.

    - A file (default): yields an empty file ``.<name>.<pid>-<host>-<random>.tmp`` in ``path``'s
      folder, to write by name. On success it is given the mode ``open()`` would give ``path``
      (the old file's, else ``0o666`` less the umask), synced and renamed over ``path``.
    - ``folder=True``: ``path`` is a folder (created like ``mkdir`` if missing); yields an empty
      folder ``.setr-save-<pid>-<host>-<random>`` inside it. On success each entry left in it is
      given its mode the same way (``0o777`` less the umask for a folder), synced and renamed over
      the entry of that name in ``path``: each file is replaced whole.

    On any error the staging is removed and ``path`` is as it was. Stagings in that folder from a
    process of this host that no longer exists (a killed run) are removed first.
    """
    path = Path(path)
    if folder:
        path.mkdir(parents=True, exist_ok=True)
    where = path if folder else path.parent
    _remove_stale_stagings(where)
    while True:
        staging = where / _staging_name(path.name, folder)
        try:
            if folder:
                staging.mkdir(0o777)
            else:
                os.close(os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield staging
        for entry in sorted(staging.iterdir()) if folder else [staging]:
            _publish(entry, path / entry.name if folder else path)
        _sync(where)
    finally:
        _remove(staging)


def _publish(staged: Path, target: Path) -> None:
    """Give ``staged`` the mode ``open()`` / ``mkdir`` would give ``target``, sync it, rename it over."""
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = (0o777 if staged.is_dir() else 0o666) & ~_umask()
    os.chmod(staged, mode)
    _sync(staged)
    os.replace(staged, target)


def _umask() -> int:
    """The process's umask, read without changing it where the kernel reports it."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _UMASK_LOCK:  # elsewhere it can only be read by setting it: briefly the strictest one
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def _sync(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to disk; a file system that cannot is let be."""
    with contextlib.suppress(OSError):
        handle = os.open(path, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _remove_stale_stagings(folder: Path) -> None:
    """Remove the stagings in ``folder`` that a process of this host which no longer runs left."""
    try:
        names = [entry.name for entry in os.scandir(folder) if entry.name.startswith(".")]
    except OSError:
        return
    for name in names:
        match = _FILE_STAGING.fullmatch(name) or _FOLDER_STAGING.fullmatch(name)
        if match and match["host"] == _HOST and not _is_running(int(match["pid"])):
            _remove(folder / name)


def _is_running(pid: int) -> bool:
    if os.name == "nt" or pid == os.getpid():  # Windows: os.kill would end the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's process
        return True
    return True


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path next to ``path`` for a writer that takes a file name; on success the file
    is synced and renamed over ``path``; on any error it is removed and ``path`` is untouched
    (:func:`atomic_staging`)."""
    with atomic_staging(path) as staging:
        yield staging


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing; on success it is flushed, synced and
    renamed over ``path``; on any error it is removed and ``path`` is untouched
    (:func:`atomic_staging`).

    Args:
        path: the file to (re)place.
        mode: ``"wb"`` or ``"w"`` (text, UTF-8).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write writes whole files: mode 'wb' or 'w', got {mode!r}")
    with atomic_staging(path) as staging, open(staging, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as file:
        yield file
        file.flush()
        os.fsync(file.fileno())


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
