"""Reading images and label masks from disk, with errors that name the file and the problem."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

__all__ = ["IMAGE_EXTENSIONS", "ImageReadError", "read_image", "read_mask"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
"""File endings treated as images when a folder is scanned."""


class ImageReadError(ValueError):
    """An image or mask file that is missing, unreadable or not in the expected form."""


def _open(path: str | os.PathLike) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ImageReadError(f"{path}: cannot read as an image ({error.__class__.__name__}: {error})") from None
    return image


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """Read an image file as RGB.

    Returns:
        ``(3, H, W)`` uint8 tensor, RGB, 0-255 (grey, palette and RGBA files are converted).

    Raises:
        ImageReadError: the file is missing or is not an image PIL can decode.
    """
    image = _open(path).convert("RGB")
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a label mask: a single-channel PNG (grey ``L`` or palette ``P``) of class indices.

    Returns:
        ``(H, W)`` integer array of the stored indices (palette files give their indices, not colours).

    Raises:
        ImageReadError: missing/unreadable file, or a colour (RGB) image instead of class indices.
    """
    image = _open(path)
    if image.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
        raise ImageReadError(
            f"{path}: a label mask must hold one class index per pixel (grey or palette PNG), "
            f"got a {image.mode} image; convert colour-coded masks to class indices first"
        )
    return np.array(image).astype(np.int64)
