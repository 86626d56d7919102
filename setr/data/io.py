"""Reading images and label masks from disk, with errors that name the file and the problem."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

__all__ = ["IMAGE_EXTENSIONS", "ImageReadError", "image_to_rgb", "pil_pixel_limit", "read_image", "read_mask"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
"""File endings treated as images when a folder is scanned."""


class ImageReadError(ValueError):
    """An image or mask file that is missing, unreadable or not in the expected form."""


# PIL's own check reads the global Image.MAX_IMAGE_PIXELS; it is lifted while a header is read (our
# check on max_pixels replaces it), under a lock so that concurrent readers restore it in order.
_PIL_LIMIT_LOCK = threading.Lock()


def pil_pixel_limit() -> int | None:
    """The largest image PIL opens: twice ``PIL.Image.MAX_IMAGE_PIXELS`` (``None``: no limit)."""
    limit = Image.MAX_IMAGE_PIXELS
    return None if limit is None else 2 * int(limit)


def _open(path: str | os.PathLike, max_pixels: int | None = None) -> Image.Image:
    """Open and decode ``path`` of at most ``max_pixels`` pixels (``None``: :func:`pil_pixel_limit`)."""
    path = Path(path)
    if path.is_dir():
        raise ImageReadError(f"{path}: a folder, not an image file (give the image files, or use setr predict FOLDER)")
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    if max_pixels is None:
        max_pixels = pil_pixel_limit()
    try:
        with _PIL_LIMIT_LOCK:
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                image = Image.open(path)  # reads the header only
            finally:
                Image.MAX_IMAGE_PIXELS = saved
        width, height = image.size
        if max_pixels is not None and width * height > max_pixels:
            image.close()
            raise ImageReadError(
                f"{path}: {width}x{height} = {width * height} pixels is more than max_pixels={max_pixels} "
                f"(a guard against decompression bombs); allow it with --max-pixels {width * height} "
                f"(read_image(path, max_pixels={width * height}))"
            )
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ImageReadError(f"{path}: cannot read as an image ({error.__class__.__name__}: {error})") from None
    return image


_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


def image_to_rgb(image: Image.Image, source: object = "image") -> np.ndarray:
    """A PIL image as ``(H, W, 3)`` uint8 RGB, as the official pipeline (OpenCV ``imread``) reads it.

    EXIF orientation is applied; grey, palette, CMYK, YCbCr and alpha images are converted (alpha is
    dropped); 16-bit grey keeps its high byte (OpenCV's 16-to-8-bit conversion, ``value >> 8``).

    Raises:
        ImageReadError: 32-bit integer or floating-point images, whose scale is unknown.
    """
    if _needs_transpose(image):
        image = ImageOps.exif_transpose(image)
    if image.mode in _SIXTEEN_BIT_MODES or (image.mode == "I" and image.format == "PNG"):
        grey = np.array(image).astype(np.uint32)
        if grey.size and int(grey.max()) > 0xFFFF:
            raise ImageReadError(f"{source}: a 32-bit image with values above 65535; save it as 8 or 16 bits")
        return np.repeat((grey >> 8).astype(np.uint8)[..., None], 3, axis=2)
    if image.mode in ("I", "F"):
        raise ImageReadError(
            f"{source}: a {'32-bit integer' if image.mode == 'I' else 'floating-point'} image has no fixed 0-255 "
            "scale; convert it to 8-bit RGB (or pass an array on the 0-255 scale)"
        )
    # an RGB image is copied out of PIL once (convert() to its own mode would make a second copy)
    return np.array(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)


def _needs_transpose(image: Image.Image) -> bool:
    """Whether the EXIF orientation asks for a transpose (``exif_transpose`` copies the image even when not)."""
    return image.getexif().get(ExifTags.Base.Orientation, 1) in range(2, 9)


def read_image(path: str | os.PathLike, max_pixels: int | None = None) -> torch.Tensor:
    """Read an image file as RGB (see :func:`image_to_rgb` for the conversions).

    Args:
        path: the image file.
        max_pixels: refuse images of more pixels than this (a decompression bomb is a small file
            that decodes to a huge image). Default: PIL's limit, :func:`pil_pixel_limit` (about 179
            million pixels; none when ``PIL.Image.MAX_IMAGE_PIXELS`` is ``None``).

    Returns:
        ``(3, H, W)`` uint8 tensor, RGB, 0-255.

    Raises:
        ImageReadError: the file is missing, is not an image PIL can decode, has more than
            ``max_pixels`` pixels, or has no 0-255 scale.
    """
    with _open(path, max_pixels) as image:
        rgb = image_to_rgb(image, path)
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


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
