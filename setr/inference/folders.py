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
    the paths it expands to. When two images get the same stem, the later ones get ``_1``, ``_2``,
    ... appended, in input order.

    Args:
        inputs: image files and folders.

    Returns:
        ``(image path, output stem)`` pairs in input order (a folder's images sorted by path), and
        one message per input that gave no image: ``"<input>: no such file or folder"`` or
        ``"<input>: no images in this folder (.jpg, ...)"``.
    """
    found: list[tuple[Path, Path]] = []
    missing: list[str] = []
    for entry in inputs:
        path = Path(entry)
        if path.is_dir():
            images = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not images:
                missing.append(f"{path}: no images in this folder ({', '.join(IMAGE_EXTENSIONS)})")
            found += [(p, p.relative_to(path).with_suffix("")) for p in images]
        elif path.is_file():
            found.append((path, Path(path.stem)))
        else:
            missing.append(f"{path}: no such file or folder")
    seen: dict[Path, int] = {}
    unique = []
    for image, stem in found:
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        unique.append((image, stem if count == 0 else stem.with_name(f"{stem.name}_{count}")))
    return unique, missing
