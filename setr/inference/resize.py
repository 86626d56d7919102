"""The official test-time resizes: keep-ratio rescale, short-side rescale and the multi-scale sizes.

The arithmetic follows mmcv's ``imrescale`` (scale factor, then ``int(side * factor + 0.5)``) and
the official ``Resize(setr_multi_scale=True)`` rule (``official_setr.md`` section 8), so that the
network sees images of exactly the sizes the official evaluation used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.meta import EvalProtocol

__all__ = ["multi_scale_sizes", "rescale_size", "resize_image", "short_side_size", "single_scale_size"]


def rescale_size(height: int, width: int, scale: tuple[float, float]) -> tuple[int, int]:
    """Keep-ratio size that fits ``scale``: long side <= ``max(scale)``, short side <= ``min(scale)``.

    Returns:
        ``(new_height, new_width)``; one of the two bounds is met exactly (up to rounding).
    """
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def short_side_size(height: int, width: int, short: int) -> tuple[int, int]:
    """Keep-ratio size whose short side is ``short`` (the long side is not capped)."""
    # The official code builds a target of the image's own aspect ratio, then rescales to it.
    target = (short * height / width, short) if height > width else (short, short * width / height)
    return rescale_size(height, width, target)


def single_scale_size(height: int, width: int, protocol: EvalProtocol) -> tuple[int, int]:
    """Network input size of the single-scale test: ``short_side`` if set, else ``test_scale``, else unchanged."""
    if protocol.short_side:
        return short_side_size(height, width, protocol.short_side)
    if protocol.test_scale:
        return rescale_size(height, width, tuple(protocol.test_scale))
    return height, width


def multi_scale_sizes(height: int, width: int, protocol: EvalProtocol) -> list[tuple[int, int]]:
    """Network input sizes of multi-scale testing, one per ratio of ``protocol.ms_ratios``.

    For ratio ``r`` the scale is ``(int(s0 * r), int(s1 * r))`` of ``test_scale`` (of the image's own
    ``(long, short)`` when ``test_scale`` is ``None``); the image is then rescaled so that its short
    side is ``min(scale)``, raised to ``protocol.crop`` when smaller (official ``setr_multi_scale``).
    """
    base = tuple(protocol.test_scale) if protocol.test_scale else (max(height, width), min(height, width))
    sizes = []
    for ratio in protocol.ms_ratios:
        scale = (int(base[0] * ratio), int(base[1] * ratio))
        short = max(min(scale), protocol.crop)
        sizes.append(short_side_size(height, width, short))
    return sizes


def resize_image(images: torch.Tensor, size: tuple[int, int], quantize: bool = True) -> torch.Tensor:
    """Bilinear (``align_corners=False``, no antialias) resize of ``(B, 3, H, W)`` 0-255 images.

    Args:
        images: RGB values on the 0-255 scale.
        size: ``(height, width)``.
        quantize: round to integers afterwards, as the official pipeline resizes 8-bit images.

    Returns:
        ``(B, 3, *size)``; the input itself when the size is unchanged.
    """
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    resized = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    return resized.round().clamp_(0, 255) if quantize else resized
