"""The images to segment: files and folders (searched recursively) -> image paths and output names."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..data.io import IMAGE_EXTENSIONS

__all__ = ["collect_images"]


def collect_images(inputs: Iterable[str | os.PathLike]) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Every image that ``inputs`` name, with the output stem it is written under (``setr predict``).

    A file is taken as it is (whatever its extension; reading it tells whether it is an image) and
    named by its stem. A folder is searched recursively for files with an image extension
    (:data:`setr.data.io.IMAGE_EXTENSIONS`, any case), each named by its path inside the folder
    without the extension, so that the folder structure is kept. Globs are the shell's job: pass
    the paths it expands to.

    No two images ever get the same stem (compared without case, as a case-insensitive disk
    would): files given directly that share a stem but lie in different folders are named by
    their paths relative to the common folder of those files (``ca/x.png``, ``cb/x.png`` ->
    ``ca/x``, ``cb/x``); a stem still taken twice (the same file twice, a folder's image and a
    file) gets ``_1``, ``_2``, ... on the later images, the first number that gives a stem no other
    image has.

    Args:
        inputs: image files and folders.

    Returns:
        ``(image path, output stem)`` pairs in input order (a folder's images sorted by path), and
        one message per input that gave no image: ``"<input>: no such file or folder"`` or
        ``"<input>: no images in this folder (.jpg, ...)"``.
    """
    found: list[tuple[Path, Path]] = []
    direct: list[int] = []  # the indices of files given directly
    missing: list[str] = []
    for entry in inputs:
        path = Path(entry)
        if path.is_dir():
            images = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not images:
                missing.append(f"{path}: no images in this folder ({', '.join(IMAGE_EXTENSIONS)})")
            found += [(p, p.relative_to(path).with_suffix("")) for p in images]
        elif path.is_file():
            direct.append(len(found))
            found.append((path, Path(path.stem)))
        else:
            missing.append(f"{path}: no such file or folder")
    _name_by_common_folder(found, direct)
    return _unique(found), missing


def _key(stem: Path) -> str:
    return stem.as_posix().casefold()


def _name_by_common_folder(found: list[tuple[Path, Path]], direct: list[int]) -> None:
    """Files given directly that share a stem, in different folders: named by their paths below
    the common folder of those files (in place)."""
    groups: dict[str, list[int]] = {}
    for index in direct:
        groups.setdefault(_key(found[index][1]), []).append(index)
    for indices in groups.values():
        paths = [found[i][0].absolute() for i in indices]
        folders = {p.parent for p in paths}
        if len(folders) < 2:
            continue
        root = Path(os.path.commonpath(folders))
        for index, path in zip(indices, paths):
            found[index] = (found[index][0], path.relative_to(root).with_suffix(""))


def _unique(found: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    """The later images of a stem taken twice renamed ``stem_N`` with a stem that no image has."""
    taken = {_key(stem) for _, stem in found}
    used: set[str] = set()
    unique = []
    for image, stem in found:
        if _key(stem) in used:
            number = 1
            while _key(stem.with_name(f"{stem.name}_{number}")) in taken:
                number += 1
            stem = stem.with_name(f"{stem.name}_{number}")
            taken.add(_key(stem))
        used.add(_key(stem))
        unique.append((image, stem))
    return unique
