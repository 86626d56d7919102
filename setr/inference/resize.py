"""The official test-time resizes: keep-ratio rescale, short-side rescale and the multi-scale sizes.

The arithmetic follows mmcv's ``imrescale`` (scale factor, then ``int(side * factor + 0.5)``) and
the official ``Resize(setr_multi_scale=True)`` rule (``official_setr.md`` section 8), so that the
network sees images of exactly the sizes the official evaluation used; the pixels themselves are
resized by OpenCV on uint8, as ``imrescale`` does (:func:`resize_image`, through
:func:`setr.data.resize.resize_bilinear_uint8`, the kernel the training augmentation uses too).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
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


def resized_argmax(
    logits: torch.Tensor,
    size: tuple[int, int],
    channels_per_step: int = 16,
    band_bytes: int = 16 * 2**20,
    dtype: torch.dtype = torch.int64,
) -> torch.Tensor:
    """``resize_logits(logits[None], size)[0].argmax(0)`` without the full-size map: ``(C, h, w)``
    logits -> ``(*size)`` class indices of ``dtype`` (int64 by default), equal bit for bit.

    The logits are resized ``channels_per_step`` channels at a time, keeping the running maximum;
    ties go to the lower class, as ``argmax``. Keep the step a multiple of 16: PyTorch's CPU resize
    vectorises across channels, and in whole vectors each value is bit for bit the one the full
    resize gives (in steps of 7 some differ in the last bit, which can flip an exact tie).

    On the CPU the output is also made in bands of rows (one step's band about ``band_bytes``):
    PyTorch's resize interpolates along the width first, then combines two rows; each band
    resizes the rows it needs along the width with PyTorch and combines them with PyTorch's row
    weights itself (:func:`_row_combiner` checks once per pair of sizes, on probes, that this
    gives PyTorch's bits on this machine, and the bands are not used where it does not). Memory
    then follows the logits, not the output: 150 ADE20K classes resized to 8000x6000 hold a few
    16 MiB bands (and a one-channel probe) instead of 3 GB per step.
    """
    height, width = size
    rows = max(1, band_bytes // (4 * channels_per_step * width))
    if logits.device.type != "cpu" or rows >= height:
        return _chunked_argmax(logits, size, channels_per_step).to(dtype)
    combine = _row_combiner(tuple(logits.shape[-2:]), (height, width))
    if combine is None:
        return _chunked_argmax(logits, size, channels_per_step).to(dtype)
    first, second, weight_first, weight_second = _row_weights(logits.shape[-2], height)
    mask = torch.empty(size, dtype=dtype)  # written band by band: the int64 argmax of one band at a time
    for top in range(0, height, rows):
        bottom = min(top + rows, height)
        low, high = int(first[top]), int(second[bottom - 1]) + 1  # the source rows this band reads
        source = logits[:, low:high]

        def band(chunk: torch.Tensor, top: int = top, bottom: int = bottom, low: int = low) -> torch.Tensor:
            across = resize_logits(chunk[None], (chunk.shape[-2], width))[0]  # along the width only
            return combine(
                across[:, first[top:bottom] - low], across[:, second[top:bottom] - low],
                weight_first[top:bottom, None], weight_second[top:bottom, None],
            )  # fmt: skip

        mask[top:bottom] = _running_argmax(source, band, channels_per_step)
    return mask


def _chunked_argmax(logits: torch.Tensor, size: tuple[int, int], channels_per_step: int) -> torch.Tensor:
    """:func:`resized_argmax` in steps of channels, each resized to the whole ``size``."""
    return _running_argmax(logits, lambda chunk: resize_logits(chunk[None], size)[0], channels_per_step)


def _running_argmax(logits: torch.Tensor, resized: Callable[[torch.Tensor], torch.Tensor], step: int) -> torch.Tensor:
    """The argmax over classes of ``resized(chunk)`` for chunks of ``step`` channels of ``logits``."""
    best_value: torch.Tensor | None = None
    best_class = torch.empty(0, dtype=torch.int64)
    for start in range(0, logits.shape[0], step):
        value, index = resized(logits[start : start + step]).max(0)
        if best_value is None:
            best_value, best_class = value, index
            continue
        better = value > best_value
        best_value = torch.where(better, value, best_value)
        best_class = torch.where(better, index + start, best_class)
    return best_class


def _row_weights(source: int, target: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """PyTorch's bilinear rows (``align_corners=False``) from ``source`` to ``target`` rows: for every
    output row the two source rows and their float32 weights.

    The source coordinate ``ratio * (row + 0.5) - 0.5`` is rounded once to float32 (PyTorch's CPU
    kernel computes it with a fused multiply-add; the exact product fits a float64).
    """
    ratio = np.float32(source) / np.float32(target)
    position = (np.float64(ratio) * (np.arange(target) + 0.5) - 0.5).astype(np.float32)
    position = np.maximum(position, np.float32(0))
    first = np.minimum(position.astype(np.int64), source - 1)
    weight_second = np.minimum(position - first.astype(np.float32), np.float32(1))
    weight_first = np.float32(1) - weight_second
    second = np.where(first < source - 1, first + 1, first)
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in (first, second, weight_first, weight_second))


_Combiner = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
_COMBINERS: tuple[_Combiner, ...] = (
    lambda a, b, wa, wb: torch.addcmul(b * wb, a, wa),  # PyTorch's row sum on FMA CPUs: fma(a, wa, b * wb)
    lambda a, b, wa, wb: a * wa + b * wb,  # without fused multiply-adds
)


def _row_combiner(source: tuple[int, int], target: tuple[int, int]) -> _Combiner | None:
    """The row sum that, with :func:`_row_weights`, gives PyTorch's own resize from ``source`` to
    ``target`` bit for bit on this machine; ``None`` when none does (then :func:`resized_argmax`
    resizes whole steps of channels, as before).

    PyTorch's kernel takes the width first for most sizes (all the large ones we tried) but not for
    all (5x7 -> 9x33 differs), so each pair of sizes is probed once with one channel at full size
    (4 bytes per output pixel), after the channel vectorisation is probed on small resizes."""
    combine = _vector_combiner()
    if combine is None or not _combines_exactly(combine, (1, *source), target):
        return None
    return combine


@functools.cache
def _vector_combiner() -> _Combiner | None:
    """The first of :data:`_COMBINERS` exact on 16-channel resizes up and down, with partial vectors."""
    probes = [((16, 37, 53), (301, 211)), ((16, 64, 85), (750, 1003)), ((16, 91, 30), (40, 30))]
    for combine in _COMBINERS:
        if all(_combines_exactly(combine, shape, size) for shape, size in probes):
            return combine
    return None


@functools.lru_cache(maxsize=64)
def _combines_exactly(combine: _Combiner, shape: tuple[int, int, int], size: tuple[int, int]) -> bool:
    """Whether width-first PyTorch plus ``combine`` equals PyTorch's resize of random ``shape`` logits."""
    logits = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 20
    first, second, weight_first, weight_second = _row_weights(shape[1], size[0])
    across = resize_logits(logits[None], (shape[1], size[1]))[0]
    expected = resize_logits(logits[None], size)[0]
    for top in range(0, size[0], 64):  # in bands: one full-size map at a time
        rows = slice(top, top + 64)
        got = combine(
            across[:, first[rows]], across[:, second[rows]], weight_first[rows, None], weight_second[rows, None]
        )
        if not torch.equal(got, expected[:, rows]):
            return False
    return True
