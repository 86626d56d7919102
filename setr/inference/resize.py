"""The official test-time resizes: keep-ratio rescale, short-side rescale and the multi-scale sizes.

The arithmetic follows mmcv's ``imrescale`` (scale factor, then ``int(side * factor + 0.5)``) and
the official ``Resize(setr_multi_scale=True)`` rule (``official_setr.md`` section 8), so that the
network sees images of exactly the sizes the official evaluation used; the pixels themselves are
resized by OpenCV on uint8, as ``imrescale`` does (:func:`resize_image`, through
:func:`setr.data.resize.resize_bilinear_uint8`, the kernel the training augmentation uses too).
"""

from __future__ import annotations

import torch

from ..data.meta import EvalProtocol
from ..data.resize import resize_bilinear_uint8
from ..models.heads import resize

__all__ = [
    "multi_scale_sizes", "rescale_size", "resize_image", "resize_logits", "resized_argmax", "short_side_size",
    "single_scale_size",
]  # fmt: skip


def rescale_size(height: int, width: int, scale: tuple[float, float]) -> tuple[int, int]:
    """Keep-ratio size that fits ``scale``: long side <= ``max(scale)``, short side <= ``min(scale)``.

    Returns:
        ``(new_height, new_width)``; one of the two bounds is met exactly (up to rounding). A side
        is never rounded down to 0: a strip such as 1x5000 keeps one row (the official rule gives
        it 0 rows, which OpenCV's resize refuses).
    """
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return max(int(height * factor + 0.5), 1), max(int(width * factor + 0.5), 1)


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
    """The official test-time resize of ``(B, C, H, W)`` images on the 0-255 scale.

    8-bit images (uint8, or every value an integer in 0..255) go through OpenCV's
    ``cv2.resize(..., INTER_LINEAR)`` on uint8 (:func:`setr.data.resize.resize_bilinear_uint8`),
    exactly what the official pipeline (``mmcv.imrescale``) does, fixed-point arithmetic and
    rounding included: the network sees the same grey levels. Other images (floats with fractions,
    values outside 0..255) are resized in float, bilinear with ``align_corners=False`` and no
    antialiasing (OpenCV's geometry), and left unrounded.

    Args:
        images: ``(B, C, H, W)`` uint8 or float images (uint8 skips the check for integers;
            :class:`~setr.inference.Predictor` keeps decoded images uint8 for this).
        size: ``(height, width)``.
        quantize: use the 8-bit path when the values allow it; ``False`` always resizes in float.

    Returns:
        ``(B, C, *size)`` float32; the input itself when the size is unchanged.
    """
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    if quantize and _is_8bit(images):
        return resize_bilinear_uint8(images.to(torch.uint8), size).to(torch.float32)
    return resize(images.float(), (size[0], size[1]))


def _is_8bit(images: torch.Tensor) -> bool:
    """Whether every value is an integer in 0..255 (an 8-bit image stored in any dtype)."""
    if images.numel() == 0:
        return False
    if images.dtype == torch.uint8:
        return True
    low, high = torch.aminmax(images)
    return bool((low >= 0) & (high <= 255)) and (not images.is_floating_point() or not bool(images.frac().any()))


def resize_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, C, h, w)`` logits resized bilinearly to ``size`` (as the official code resizes them back
    to the image): ``(B, C, *size)``; unchanged when already that size."""
    return resize(logits, (size[0], size[1]))


def resized_argmax(logits: torch.Tensor, size: tuple[int, int], channels_per_step: int = 16) -> torch.Tensor:
    """``resize_logits(logits[None], size)[0].argmax(0)`` without the full-size map: ``(C, h, w)``
    logits -> ``(*size)`` int64 class indices.

    The logits are resized ``channels_per_step`` channels at a time, keeping the running maximum;
    ties go to the lower class, as ``argmax``. Keep the step a multiple of 16: PyTorch's CPU resize
    vectorises across channels, and in whole vectors each value is bit for bit the one the full
    resize gives (in steps of 7 some differ in the last bit, which can flip an exact tie). 150
    ADE20K classes at 768x768 then hold 38 MB instead of 354 MB at once.
    """
    best_value: torch.Tensor | None = None
    best_class = torch.zeros(size, dtype=torch.int64, device=logits.device)
    for start in range(0, logits.shape[0], channels_per_step):
        value, index = resize_logits(logits[None, start : start + channels_per_step], size)[0].max(0)
        if best_value is None:
            best_value, best_class = value, index
            continue
        better = value > best_value
        best_value = torch.where(better, value, best_value)
        best_class = torch.where(better, index + start, best_class)
    return best_class
