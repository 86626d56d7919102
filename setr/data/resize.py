"""OpenCV's image and label resizes, the kernels of the official pipeline (mmcv ``imresize``).

The official code resizes images with ``cv2.resize(..., INTER_LINEAR)`` on uint8 (fixed-point
weights, rounded results) and label maps with ``cv2.resize(..., INTER_NEAREST)``. The training
augmentation (:mod:`setr.data.transforms`) and the test-time resize
(:func:`setr.inference.resize.resize_image`) both call these, so the network sees the official
grey levels and labels, on any CPU (torch's uint8 bilinear changes with the vector unit, and its
nearest rule picks another source row or column for some sizes).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

__all__ = ["resize_bilinear_uint8", "resize_nearest"]

# Element types cv2.resize takes in every supported OpenCV version; nearest only copies elements, so
# other label types go through int32 with the same source pixels.
_NEAREST_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.float32, torch.float64)


def _size(size: Sequence[int]) -> tuple[int, int]:
    height, width = int(size[0]), int(size[1])
    if height <= 0 or width <= 0:
        raise ValueError(f"the target size must be positive, got {tuple(size)}")
    return height, width


def resize_bilinear_uint8(images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``cv2.resize(image, INTER_LINEAR)`` of uint8 images, byte for byte what OpenCV gives the
    ``(H, W, C)`` image.

    Args:
        images: ``(C, H, W)`` or ``(B, C, H, W)`` uint8, on any device.
        size: ``(height, width)``.

    Returns:
        ``(C, *size)`` or ``(B, C, *size)`` uint8 on the images' device.
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    if images.ndim not in (3, 4):
        raise ValueError(f"expected (C, H, W) or (B, C, H, W) images, got shape {tuple(images.shape)}")
    height, width = _size(size)
    batched = images if images.ndim == 4 else images[None]
    pixels = batched.detach().to("cpu").contiguous().numpy()
    batch, channels = pixels.shape[:2]
    if channels == 2:
        # OpenCV takes its exact-x2-downscale shortcut (area averaging) for every channel count but
        # 2, so a 2-channel image must be resized interleaved to get OpenCV's answer.
        hwc = np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))
        out = np.empty((batch, height, width, channels), np.uint8)
        for b in range(batch):
            cv2.resize(hwc[b], (width, height), dst=out[b], interpolation=cv2.INTER_LINEAR)
        out = out.transpose(0, 3, 1, 2)
    else:
        # Otherwise each channel is resized on its own, so plane by plane gives the same bytes
        # without the interleaving copies.
        out = np.empty((batch, channels, height, width), np.uint8)
        for b, c in np.ndindex(batch, channels):
            cv2.resize(pixels[b, c], (width, height), dst=out[b, c], interpolation=cv2.INTER_LINEAR)
    resized = torch.from_numpy(np.ascontiguousarray(out)).reshape(*images.shape[:-2], height, width)
    return resized.to(images.device)


def resize_nearest(labels: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``cv2.resize(label, INTER_NEAREST)`` of label maps: every output pixel copies the source
    pixel OpenCV picks (``floor(x * src / dst)``, in double precision).

    Args:
        labels: ``(H, W)`` or ``(..., H, W)`` of any integer, bool or float type, on any device.
        size: ``(height, width)``.

    Returns:
        ``(*size)`` or ``(..., *size)``, the labels' dtype and device.
    """
    if labels.ndim < 2:
        raise ValueError(f"expected (H, W) labels, got shape {tuple(labels.shape)}")
    height, width = _size(size)
    planes = labels.detach().to("cpu")
    planes = planes.flatten(0, -3) if planes.ndim > 2 else planes[None]
    if planes.dtype not in _NEAREST_DTYPES:
        if planes.numel() and planes.dtype != torch.bool:
            low, high = (int(v) for v in torch.aminmax(planes))
            if low < -(2**31) or high >= 2**31:
                raise ValueError(f"label values {low}..{high} do not fit the int32 the resize runs on")
        planes = planes.to(torch.int32)
    source = planes.contiguous().numpy()
    out = np.empty((source.shape[0], height, width), source.dtype)
    for k in range(source.shape[0]):
        cv2.resize(source[k], (width, height), dst=out[k], interpolation=cv2.INTER_NEAREST)
    resized = torch.from_numpy(out).reshape(*labels.shape[:-2], height, width)
    return resized.to(labels.device, labels.dtype)
