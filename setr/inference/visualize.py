"""Masks as palette PNGs and colour overlays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ..data.meta import label_colormap

__all__ = ["mask_to_image", "overlay", "palette_for"]


def palette_for(num_classes: int, palette: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """``(num_classes, 3)`` uint8 colours: ``palette`` when it covers every class, else the VOC colour map."""
    if palette is not None and len(palette) >= num_classes:
        return np.asarray(palette[:num_classes], dtype=np.uint8).reshape(num_classes, 3)
    return np.asarray(label_colormap(num_classes), dtype=np.uint8)


def mask_to_image(mask: torch.Tensor | np.ndarray, palette: np.ndarray) -> Image.Image:
    """A ``(H, W)`` class-index mask as a palette (``P`` mode) PNG image: indices kept, colours attached.

    Raises:
        ValueError: more than 256 classes (a palette image holds 8-bit indices).
    """
    if len(palette) > 256:
        raise ValueError(f"{len(palette)} classes do not fit a palette PNG (256 at most)")
    array = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask).astype(np.uint8)
    image = Image.fromarray(array, mode="P")
    flat = np.zeros((256, 3), dtype=np.uint8)
    flat[: len(palette)] = palette
    image.putpalette(flat.reshape(-1).tolist())
    return image


def overlay(image: torch.Tensor, mask: torch.Tensor, palette: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """Blend the class colours of ``mask`` (``(H, W)``) over the RGB 0-255 ``image`` (``(3, H, W)``).

    Blended in bands of rows, so that a large photo never has a float copy of itself.
    """
    image, mask = image.detach().cpu(), np.asarray(mask.cpu())
    height, width = mask.shape
    out = np.empty((height, width, 3), dtype=np.uint8)
    rows = max(1, _BAND_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        band = slice(top, top + rows)
        rgb = image[:, band].float().permute(1, 2, 0).numpy()
        colours = palette[mask[band]].astype(np.float32)
        blended = (1 - alpha) * rgb + alpha * colours
        out[band] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(out, mode="RGB")


_BAND_PIXELS = 1 << 20
"""Pixels per band of :func:`overlay` (a few MiB of float temporaries)."""
