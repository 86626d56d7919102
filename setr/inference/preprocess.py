"""Turning user images (paths, PIL images, arrays, tensors) into RGB tensors and normalising them."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data.io import image_to_rgb, read_image
from ..data.meta import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["ImageInput", "is_batch", "normalize", "preprocess", "to_rgb_tensor", "to_rgb_tensors"]

ImageInput = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor
"""One image: a file path, a PIL image, an ``(H, W, 3)``/``(H, W)`` array or a ``(3, H, W)`` tensor."""


def is_batch(images: Any) -> bool:
    """Whether ``images`` holds several images: a list/tuple, an ``(B, H, W, 3)`` array or a ``(B, 3, H, W)`` tensor."""
    if isinstance(images, (list, tuple)):
        return True
    if isinstance(images, np.ndarray):
        return images.ndim == 4
    if isinstance(images, torch.Tensor):
        return images.ndim == 4
    return False


def _to_rgb_tensor(image: ImageInput) -> torch.Tensor:
    """:func:`to_rgb_tensor` without the checks on the values."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if isinstance(image, Image.Image):
        return torch.from_numpy(image_to_rgb(image, "PIL image")).permute(2, 0, 1)
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise ValueError(
                f"a numpy image must be (H, W, 3) RGB or (H, W) grey, got shape {image.shape}; "
                "channels-first data should be passed as a torch tensor"
            )
        array = np.ascontiguousarray(image[:, :, :3])
        return torch.from_numpy(array).permute(2, 0, 1)
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(
                f"an image tensor must be (3, H, W) RGB, got shape {tuple(image.shape)}; "
                "channels-last data should be passed as a numpy array"
            )
        return image
    raise TypeError(
        f"unsupported image type {type(image).__name__}: pass a path, a PIL image, a numpy array or a tensor"
    )


def _to_channels_tensor(image: ImageInput, channels: int) -> torch.Tensor:
    """An image of a model with ``channels != 3`` inputs as ``(channels, H, W)`` floats."""
    if isinstance(image, (str, os.PathLike, Image.Image)):
        if channels != 1:
            raise ValueError(
                f"a {channels}-channel model reads arrays (H, W, {channels}) or tensors ({channels}, H, W), "
                "not image files or PIL images"
            )
        grey = Image.open(image) if not isinstance(image, Image.Image) else image
        return torch.from_numpy(np.array(grey.convert("L"), dtype=np.uint8))[None]
    if isinstance(image, np.ndarray):
        array = image[:, :, None] if image.ndim == 2 and channels == 1 else image
        if array.ndim != 3 or array.shape[2] != channels:
            raise ValueError(f"this model takes {channels}-channel arrays (H, W, {channels}), got shape {image.shape}")
        return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != channels:
            raise ValueError(
                f"this model takes {channels}-channel tensors ({channels}, H, W), got shape {tuple(image.shape)}"
            )
        return image
    raise TypeError(f"unsupported image type {type(image).__name__}: pass a numpy array or a tensor")


def to_rgb_tensor(image: ImageInput, channels: int = 3, keep_uint8: bool = False) -> torch.Tensor:
    """One image as a float ``(3, H, W)`` tensor of RGB values on the 0-255 scale.

    Args:
        image: a path (read with PIL), a PIL image (any mode; converted to RGB), a numpy array
            ``(H, W, 3)`` channels-last or ``(H, W)`` grey, or a tensor ``(3, H, W)``
            channels-first. Arrays and tensors are read as RGB on the 0-255 scale, whatever their
            dtype (as the official SETR pipeline): divide nothing, and pass BGR images reversed.
            A floating-point image whose values all lie in [0, 1] is almost certainly on the
            0-1 scale: it is used as given, with a warning.
        channels: the model's input channels. Other than 3 (e.g. RGB + depth, multispectral),
            arrays must be ``(H, W, channels)`` and tensors ``(channels, H, W)``, with values on
            the scale of the model's ``info.mean``/``info.std``; a 1-channel model also reads
            image files and PIL images as greyscale.
        keep_uint8: return 8-bit images (files, PIL images, uint8 arrays and tensors) as uint8
            rather than float, e.g. for the OpenCV test resize of :func:`resize_image`.

    Raises:
        TypeError: an unsupported type.
        ValueError: an unsupported shape, an empty image, or NaN/infinite values.
        setr.data.io.ImageReadError: a path that cannot be read.
    """
    floating = isinstance(image, torch.Tensor | np.ndarray) and (
        image.dtype.is_floating_point if isinstance(image, torch.Tensor) else np.issubdtype(image.dtype, np.floating)
    )
    rgb = _to_rgb_tensor(image) if channels == 3 else _to_channels_tensor(image, channels)
    if not (keep_uint8 and rgb.dtype == torch.uint8):
        rgb = rgb.float()
    if rgb.shape[-2] == 0 or rgb.shape[-1] == 0:
        raise ValueError(f"empty image of shape {tuple(rgb.shape)}")
    if rgb.is_floating_point() and not bool(torch.isfinite(rgb).all()):  # integers are finite
        raise ValueError("the image holds NaN or infinite values; fix the input (a mask from it would be meaningless)")
    if floating and rgb.numel() and 0 <= float(rgb.min()) and float(rgb.max()) <= 1:
        warnings.warn(
            "a floating-point image with all values in [0, 1]: SETR expects RGB on the 0-255 scale; "
            "multiply by 255 (the image is used as given)",
            stacklevel=3,
        )
    return rgb


def to_rgb_tensors(
    images: ImageInput | Sequence[ImageInput], channels: int = 3, keep_uint8: bool = False
) -> list[torch.Tensor]:
    """Every image of ``images`` (one image or a batch, see :func:`is_batch`) as ``(channels, H, W)``
    tensors (0-255 RGB for 3 channels; see :func:`to_rgb_tensor`)."""
    if not is_batch(images):
        return [to_rgb_tensor(images, channels, keep_uint8)]
    return [to_rgb_tensor(image, channels, keep_uint8) for image in images]


def normalize(
    images: torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """``(images - mean) / std`` per channel, for ``(..., C, H, W)`` images (RGB on the 0-255 scale
    for the default ImageNet statistics); ``mean`` and ``std`` have one value per channel."""
    if len(mean) != images.shape[-3] or len(std) != images.shape[-3]:
        raise ValueError(
            f"{images.shape[-3]}-channel images need one mean and std per channel, got {len(mean)} and {len(std)}; "
            "set model.info = model.info.replace(mean=..., std=...)"
        )
    if not images.is_floating_point():
        images = images.float()
    mean_t = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(-1, 1, 1)
    return (images - mean_t) / std_t


def preprocess(
    images: ImageInput | Sequence[ImageInput],
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    channels: int = 3,
) -> torch.Tensor:
    """Images of one size as the normalised batch ``model(x)`` takes.

    Args:
        images: one image or a batch (see :func:`to_rgb_tensor`), all of the same size.
        mean: per-channel mean, RGB on the 0-255 scale by default (``model.info.mean``).
        std: per-channel std (``model.info.std``).
        channels: the model's input channels (``model.config.in_chans``).

    Returns:
        ``(B, channels, H, W)`` float32, normalised.

    Raises:
        ValueError: images of different sizes (use :class:`setr.inference.Predictor` for those).
    """
    tensors = to_rgb_tensors(images, channels)
    sizes = {tuple(t.shape[-2:]) for t in tensors}
    if len(sizes) > 1:
        raise ValueError(
            f"images of different sizes {sorted(sizes)} cannot share a batch; use setr.inference.Predictor"
        )
    return normalize(torch.stack(tensors), mean, std)
