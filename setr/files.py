"""Writing files without ever losing a user's: atomic replacement, refusal to overwrite, early checks.

Every file ``setr`` writes goes through :func:`atomic_staging` (directly, or through
:func:`atomic_write` / :func:`atomic_target`): it is written under a temporary name next to its
target, given the mode ``open()`` would give it (the umask is honoured: 0644 under umask 022),
flushed to disk, then renamed over the target, so an interrupted write leaves the old file whole.
A staging left behind by a killed run is removed by the next write to that folder. A write that the
disk or the folder stops (full, over quota, read-only, not permitted) ends in one
:class:`WriteFailed` naming the file and the space it needs, whatever library was writing.
Commands check their output locations with :func:`check_output_dir` / :func:`check_new_files`
before any expensive work, and refuse to replace existing files unless told to.
"""

from __future__ import annotations

import contextlib
import errno
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
    "OutputExistsError", "WriteFailed", "atomic_staging", "atomic_target", "atomic_write", "check_free_space",
    "check_new_files", "check_output_dir", "HOST", "process_may_run",
]  # fmt: skip


class OutputExistsError(FileExistsError):
    """An output would replace a file the user already has; the message says how to allow it."""


class WriteFailed(OSError):
    """A write the disk or the folder stopped: full (``ENOSPC``), over quota (``EDQUOT``), read-only
    (``EROFS``) or not permitted (``EACCES``, ``EPERM``). The old file is whole and no staging is left.

    The message is one line naming the file, the space it needs and the space there was, and what
    to do. ``errno`` is the cause; ``path`` the file (or folder) that was being written; ``needed``
    and ``free`` in bytes where known (``needed``: the writer's estimate, else at least ``written``,
    what was written when it failed).
    """

    def __init__(
        self, code: int, path: Path, needed: int | None = None, free: int | None = None, written: int = 0
    ) -> None:
        self.path, self.needed, self.free, self.written = Path(path), needed, free, written
        super().__init__(_fault_message(code, self.path, needed, free, written))
        self.errno = code  # set after: OSError would otherwise print "[Errno 28] ..." instead of the message

    def moved(self, staging: Path, target: Path) -> WriteFailed:
        """The same failure, naming the file under ``target`` when it was written inside ``staging``."""
        if not self.path.is_relative_to(staging):
            return self
        return WriteFailed(self.errno, target / self.path.relative_to(staging), self.needed, self.free, self.written)


_FULL = (errno.ENOSPC, errno.EDQUOT)
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
_FAULTS = _FULL + _READ_ONLY
_RUST_OS_ERROR = re.compile(r"\(os error (?P<code>[0-9]+)\)")  # a Rust io::Error (safetensors)


def _fault_message(code: int, path: Path, needed: int | None, free: int | None, written: int) -> str:
    if code in _FULL:
        what = "no space left on" if code == errno.ENOSPC else "the disk quota is exceeded on"
        if needed and (free is None or needed > free):  # refused before writing, or the estimate did not fit
            sizes = [f"needs about {_size(needed)}"]
        else:  # stopped midway: it needed more than it wrote (or than the estimate)
            sizes = [f"needs more than {_size(max(written, needed or 0))}" if written or needed else ""]
        if free is not None and code == errno.ENOSPC:
            sizes.append(f"{_size(free)} free")
        sizes = ", ".join(filter(None, sizes))
        return (
            f"{what} {path.parent} while writing {path.name}{f' ({sizes})' if sizes else ''}: free space there or "
            "choose another output folder (--out); nothing was replaced"
        )
    reason = "it is on a read-only file system" if code == errno.EROFS else "permission denied"
    return f"cannot write {path}: {reason}; choose another output folder (--out); nothing was replaced"


def _size(count: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if count < 999.5:
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.3g} {unit}"
        count /= 1000
    return f"{count:.3g} TB"


# The staging names carry the writer's pid and host, so that a later run can tell a staging of a
# killed process (removed) from one still being written (left alone), even on a shared folder.
HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_FILE_STAGING = re.compile(r"\..+\.(?P<pid>[0-9]+)-(?P<host>[0-9a-f]{8})-[0-9a-f]+\.tmp")
_FOLDER_STAGING = re.compile(r"\.setr-save-(?P<pid>[0-9]+)-(?P<host>[0-9a-f]{8})-[0-9a-f]+")
_UMASK_LOCK = threading.Lock()


def _staging_name(target: str, folder: bool, pid: int | None = None) -> str:
    """The name of a staging for ``target`` (a file's name; unused for a folder's staging)."""
    stamp = f"{os.getpid() if pid is None else pid}-{HOST}-{secrets.token_hex(4)}"
    return f".setr-save-{stamp}" if folder else f".{target}.{stamp}.tmp"


@contextlib.contextmanager
def atomic_staging(path: str | os.PathLike, folder: bool = False, size: int | None = None) -> Iterator[Path]:
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

    Args:
        path: the file (or folder) to (re)place.
        folder: stage a folder's entries rather than one file.
        size: about how many bytes will be written (at most what the file will hold): refused at
            once when the disk has less room, and named in the message when a write fails.

    Raises:
        WriteFailed: the disk is full or over quota, or the folder read-only or not permitted, when
            the staging is made, written (whatever library writes it) or put in place.
    """
    path = Path(path)
    where = path if folder else path.parent
    staging = free = None
    try:
        if folder:
            path.mkdir(parents=True, exist_ok=True)
        _remove_stale_stagings(where)
        free = check_free_space(path, size) if size is not None else _free_bytes(where)
        staging = _new_staging(where, path.name, folder)
        yield staging
        for entry in sorted(staging.iterdir()) if folder else [staging]:
            _publish(entry, path / entry.name if folder else path)
        _sync(where)
    except Exception as error:
        fault = _as_write_failed(error, path, folder, staging, size, free)
        if fault is None or fault is error:
            raise
        raise fault from error
    finally:
        if staging is not None:
            _remove(staging)


def check_free_space(path: str | os.PathLike, size: int) -> int | None:
    """Refuse at once to write about ``size`` bytes to ``path`` when its disk has less room.

    Returns:
        The bytes free there (None where it cannot be told).

    Raises:
        WriteFailed: ``ENOSPC``, naming ``path``, the size and the room there is.
    """
    path = Path(path)
    free = _free_bytes(path if path.is_dir() else path.parent)
    if free is not None and size > free:
        raise WriteFailed(errno.ENOSPC, path, size, free)
    return free


def _new_staging(where: Path, name: str, folder: bool) -> Path:
    while True:
        staging = where / _staging_name(name, folder)
        try:
            if folder:
                staging.mkdir(0o777)
            else:
                os.close(os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return staging
        except FileExistsError:
            continue


def _as_write_failed(
    error: Exception, path: Path, folder: bool, staging: Path | None, size: int | None, free: int | None
) -> WriteFailed | None:
    """``error`` as the :class:`WriteFailed` of writing ``path``, or None when the disk and the folder
    did not cause it (then it goes on as it is)."""
    if isinstance(error, WriteFailed):  # from a writer inside a folder's staging: name the file in place
        return error.moved(staging, path) if folder and staging is not None else None
    where = path if folder else path.parent
    code = _fault_code(error, where, staging)
    if code is None:
        return None
    target = path
    if folder and staging is not None:
        target = path / _being_written(staging, error).relative_to(staging) if any(staging.iterdir()) else path
    return WriteFailed(code, target, size, free, _bytes_under(staging) if staging is not None else 0)


def _fault_code(error: BaseException, where: Path, staging: Path | None) -> int | None:
    """The errno of the disk's or the folder's fault behind ``error`` (anywhere in its chain), or None.

    Writers in C++ and Rust re-raise an ``OSError`` as their own error (torch's ``RuntimeError``
    keeps it as the context, safetensors in the message), and numpy's ``tofile`` raises one without
    an errno: then a disk with (almost) no room left says it was full.
    """
    seen, chain, unknown = set(), [error], False
    while chain:
        link = chain.pop()
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        if isinstance(link, OSError):
            elsewhere = link.filename is not None and not _is_under(Path(os.fsdecode(link.filename)), where)
            if link.errno in _FAULTS and not elsewhere:
                return link.errno
            unknown |= link.errno is None
        match = _RUST_OS_ERROR.search(str(link))
        if match and int(match["code"]) in _FAULTS:
            return int(match["code"])
        chain += [link.__cause__, link.__context__]
    left = _free_bytes(where) if unknown else None
    return errno.ENOSPC if left is not None and left < _NEARLY_FULL else None


_NEARLY_FULL = 1 << 20
"""Less room than this when a write failed without saying why: the disk was full."""


def _is_under(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def _being_written(staging: Path, error: BaseException) -> Path:
    """The file in a folder's staging that ``error`` stopped: the one it names, else the newest."""
    named = getattr(error, "filename", None)
    if named is not None and _is_under(Path(os.fsdecode(named)), staging):
        return Path(os.fsdecode(named))
    entries = [p for p in staging.rglob("*") if p.is_file()] or [staging]
    return max(entries, key=lambda p: p.stat().st_mtime_ns)


def _bytes_under(path: Path) -> int:
    with contextlib.suppress(OSError):
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size
    return 0


def _free_bytes(folder: Path) -> int | None:
    """The bytes this process may still write in ``folder`` (root: the blocks reserved for it too)."""
    try:
        usage = os.statvfs(folder)
    except (OSError, AttributeError):  # AttributeError: Windows
        with contextlib.suppress(OSError):
            return shutil.disk_usage(folder).free
        return None
    blocks = usage.f_bfree if hasattr(os, "geteuid") and os.geteuid() == 0 else usage.f_bavail
    return blocks * usage.f_frsize


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
    """Flush a file's (or a folder's entries') data to disk; a file system that cannot is let be, but
    not one that lost the data (full, over quota, an I/O error)."""
    try:
        handle = os.open(path, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)
    except OSError as error:
        if error.errno in (*_FULL, errno.EIO):
            raise


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
        if match and not process_may_run(int(match["pid"]), match["host"]):
            _remove(folder / name)


def process_may_run(pid: int, host: str) -> bool:
    """Whether process ``pid`` of ``host`` (a hash, :data:`HOST`) may still run: ``False`` only when
    it is known to be gone (a pid means something only on its own machine; another host's process
    is assumed alive). Stale stagings and output-folder locks (:mod:`setr.lock`) are judged by it."""
    if host != HOST:
        return True
    if pid <= 0:
        return False
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
def atomic_target(path: str | os.PathLike, size: int | None = None) -> Iterator[Path]:
    """A temporary path next to ``path`` for a writer that takes a file name; on success the file
    is synced and renamed over ``path``; on any error it is removed and ``path`` is untouched
    (:func:`atomic_staging`, which also says what ``size`` does and when :class:`WriteFailed` is raised)."""
    with atomic_staging(path, size=size) as staging:
        yield staging


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", size: int | None = None) -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing; on success it is flushed, synced and
    renamed over ``path``; on any error it is removed and ``path`` is untouched
    (:func:`atomic_staging`).

    Args:
        path: the file to (re)place.
        mode: ``"wb"`` or ``"w"`` (text, UTF-8).
        size: about how many bytes will be written (see :func:`atomic_staging`).

    Raises:
        WriteFailed: the disk is full, or the folder read-only (see :func:`atomic_staging`).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write writes whole files: mode 'wb' or 'w', got {mode!r}")
    with (
        atomic_staging(path, size=size) as staging,
        open(staging, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as file,
    ):
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
