"""The official SETR training augmentation (mmseg 0.x semantics) as ``torchvision.transforms.v2``.

The train pipeline of every official config (``official_setr.md`` section 7)::

    RandomResize(scale, ratio 0.5-2.0, keep ratio) -> RandomCrop(crop, cat_max_ratio 0.75)
    -> RandomHorizontalFlip(0.5) -> PhotoMetricDistortion -> Normalize(mean, std on 0-255 RGB)
    -> Pad(crop; image with 0, label with 255)

The transforms take and return ``(tv_tensors.Image, tv_tensors.Mask)`` pairs, so they compose with
any other v2 transform; geometric ones move the label with the image (nearest-neighbour for the
label), photometric ones leave the label alone. The pixels go through the official kernels: OpenCV's
``INTER_LINEAR`` resize on uint8 and ``INTER_NEAREST`` for labels (:mod:`setr.data.resize`),
OpenCV's uint8 HSV conversion and numpy's float32 arithmetic for the colour steps, so on the same
random draws the output equals the official pipeline's. Images stay uint8 until ``ToDtype``.
Randomness comes from torch's global generator; :func:`apply_transform` runs a pipeline under a
per-sample seed for reproducible augmentation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from .meta import IMAGENET_MEAN, IMAGENET_STD
from .resize import resize_bilinear_uint8, resize_nearest

__all__ = [
    "PadTo",
    "PhotoMetricDistortion",
    "RandomCropCatMax",
    "RandomResize",
    "apply_transform",
    "eval_transform",
    "train_transform",
]


def _mask_of(flat_inputs: list[Any]) -> torch.Tensor | None:
    return next((x for x in flat_inputs if isinstance(x, tv_tensors.Mask)), None)


def _spatial_size(flat_inputs: list[Any]) -> tuple[int, int]:
    for x in flat_inputs:
        if isinstance(x, (tv_tensors.Image, tv_tensors.Mask)):
            return tuple(x.shape[-2:])
    raise TypeError("expected a tv_tensors.Image or tv_tensors.Mask among the inputs")


def _rand(low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(torch.rand(()))


def _randint(low: int, high: int) -> int:
    """An integer in ``[low, high)``."""
    return int(torch.randint(low, high, ()))


class RandomResize(v2.Transform):
    """Keep-ratio resize to a random multiple of a dataset scale (mmcv ``Resize`` with ``ratio_range``).

    A ratio ``r ~ U(ratio_range)`` gives the target ``(int(long * r), int(short * r))``; the image
    is scaled by the largest factor that keeps its long side <= the target long side and its short
    side <= the target short side. uint8 images go through ``cv2.resize(INTER_LINEAR)``, labels
    through ``cv2.resize(INTER_NEAREST)``, as mmcv's ``imrescale`` resizes them; other inputs
    (boxes, ...) through torchvision's kernels.
    """

    def __init__(self, scale: Sequence[int], ratio_range: Sequence[float] | None = (0.5, 2.0)) -> None:
        """
        Args:
            scale: the dataset scale ``(long, short)``, e.g. ``(2048, 1024)`` for Cityscapes.
            ratio_range: ``(low, high)`` of the random ratio; ``None`` rescales to ``scale`` exactly.
        """
        super().__init__()
        if len(scale) != 2 or min(scale) <= 0:
            raise ValueError(f"scale must be (long, short) with positive sides, got {scale}")
        self.scale = (max(scale), min(scale))
        self.ratio_range = tuple(ratio_range) if ratio_range is not None else None

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = _spatial_size(flat_inputs)
        ratio = _rand(*self.ratio_range) if self.ratio_range else 1.0
        long_side, short_side = int(self.scale[0] * ratio), int(self.scale[1] * ratio)
        factor = min(long_side / max(height, width), short_side / min(height, width))
        return {"size": [int(height * factor + 0.5), int(width * factor + 0.5)]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask):
            return tv_tensors.wrap(resize_nearest(inpt.as_subclass(torch.Tensor), params["size"]), like=inpt)
        if isinstance(inpt, tv_tensors.Image) or type(inpt) is torch.Tensor:  # v2 reads a plain tensor as an image
            if inpt.dtype != torch.uint8:
                raise TypeError(f"RandomResize expects uint8 images (0-255), got {inpt.dtype}")
            resized = resize_bilinear_uint8(inpt.as_subclass(torch.Tensor), params["size"])
            return tv_tensors.wrap(resized, like=inpt) if isinstance(inpt, tv_tensors.Image) else resized
        return self._call_kernel(F.resize, inpt, params["size"], antialias=False)


class RandomCropCatMax(v2.Transform):
    """Random crop that avoids crops dominated by one class (mmseg ``RandomCrop(cat_max_ratio)``).

    A crop is redrawn (at most ``max_tries`` times) while it holds a single class or one class covers
    ``cat_max_ratio`` or more of its non-ignored pixels; after that the last draw is kept. Images
    smaller than the crop are cropped to their own size on that side (:class:`PadTo` pads later).
    """

    def __init__(
        self, size: int | Sequence[int], cat_max_ratio: float = 0.75, ignore_index: int = 255, max_tries: int = 10
    ) -> None:
        """
        Args:
            size: crop ``(H, W)`` or one side.
            cat_max_ratio: the largest share one class may have; ``1.0`` disables the rule.
            ignore_index: label value excluded from the class counts.
            max_tries: redraws before giving up.
        """
        super().__init__()
        self.size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        self.cat_max_ratio = cat_max_ratio
        self.ignore_index = ignore_index
        self.max_tries = max_tries

    def _draw(self, height: int, width: int) -> tuple[int, int]:
        return _randint(0, max(height - self.size[0], 0) + 1), _randint(0, max(width - self.size[1], 0) + 1)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = _spatial_size(flat_inputs)
        crop_h, crop_w = min(self.size[0], height), min(self.size[1], width)
        top, left = self._draw(height, width)
        mask = _mask_of(flat_inputs)
        if mask is not None and self.cat_max_ratio < 1.0:
            for _ in range(self.max_tries):
                if self.accepts(mask[..., top : top + crop_h, left : left + crop_w]):
                    break
                top, left = self._draw(height, width)
        return {"top": top, "left": left, "height": crop_h, "width": crop_w}

    def accepts(self, crop: torch.Tensor) -> bool:
        """Whether a label crop has 2+ classes and none covering ``cat_max_ratio`` of it."""
        counts = torch.bincount(crop.reshape(-1).to(torch.int64))
        if 0 <= self.ignore_index < counts.numel():
            counts[self.ignore_index] = 0
        counts = counts[counts > 0]
        return counts.numel() > 1 and float(counts.max()) / float(counts.sum()) < self.cat_max_ratio

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.crop, inpt, **params)


class PhotoMetricDistortion(v2.Transform):
    """mmseg 0.x ``PhotoMetricDistortion`` on ``uint8`` RGB images; labels pass through.

    In order, each step with probability 0.5: brightness (add ``U(-32, 32)``), contrast (multiply by
    ``U(0.5, 1.5)``) either here or last (a coin decides), saturation (multiply the HSV S channel by
    ``U(0.5, 1.5)``), hue (shift H by an integer in ``[-18, 18)`` on OpenCV's 0-180 scale). As in mmseg,
    brightness, contrast and saturation compute in float32, clip to 0-255 and truncate to ``uint8``,
    and act on the raw values (no blending with a mean, unlike ``v2.ColorJitter``); the HSV steps
    use OpenCV's uint8 ``cvtColor`` (RGB<->HSV here, BGR<->HSV in mmcv: the same HSV per pixel).
    """

    def __init__(
        self,
        brightness_delta: int = 32,
        contrast_range: Sequence[float] = (0.5, 1.5),
        saturation_range: Sequence[float] = (0.5, 1.5),
        hue_delta: int = 18,
    ) -> None:
        super().__init__()
        self.brightness_delta = brightness_delta
        self.contrast_range = tuple(contrast_range)
        self.saturation_range = tuple(saturation_range)
        self.hue_delta = hue_delta

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        def maybe(value: float) -> float | None:
            return value if _randint(0, 2) else None

        return {
            "brightness": maybe(_rand(-self.brightness_delta, self.brightness_delta)),
            "contrast_first": bool(_randint(0, 2)),
            "contrast": maybe(_rand(*self.contrast_range)),
            "saturation": maybe(_rand(*self.saturation_range)),
            "hue": maybe(_randint(-self.hue_delta, self.hue_delta)),
        }

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, tv_tensors.Image):
            return inpt
        if inpt.dtype != torch.uint8:
            raise TypeError(f"PhotoMetricDistortion expects a uint8 image (0-255), got {inpt.dtype}")
        if inpt.ndim < 3 or inpt.shape[-3] != 3:
            raise ValueError(f"PhotoMetricDistortion expects RGB images (..., 3, H, W), got {tuple(inpt.shape)}")
        images = inpt.as_subclass(torch.Tensor).detach().to("cpu")
        images = images.flatten(0, -4) if images.ndim > 3 else images[None]
        hwc = images.permute(0, 2, 3, 1).contiguous().numpy()
        for k in range(len(hwc)):
            hwc[k] = _distort(hwc[k], params)
        distorted = torch.from_numpy(hwc).permute(0, 3, 1, 2).reshape(inpt.shape)
        return tv_tensors.wrap(distorted.contiguous().to(inpt.device), like=inpt)


def _distort(rgb: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """The distortion steps on one ``(H, W, 3)`` uint8 RGB image, in mmseg 0.x's order."""
    img = rgb
    if params["brightness"] is not None:
        img = _convert(img, beta=params["brightness"])
    if params["contrast_first"] and params["contrast"] is not None:
        img = _convert(img, alpha=params["contrast"])
    if params["saturation"] is not None:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[..., 1] = _convert(hsv[..., 1], alpha=params["saturation"])
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if params["hue"] is not None:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = (hsv[..., 0].astype(np.int64) + params["hue"]) % 180
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if not params["contrast_first"] and params["contrast"] is not None:
        img = _convert(img, alpha=params["contrast"])
    return img


def _convert(img: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """mmseg's ``convert``: ``img * alpha + beta`` in float32, clipped to 0-255, truncated to uint8."""
    scaled = img.astype(np.float32) * np.float32(alpha) + np.float32(beta)
    return np.clip(scaled, 0, 255).astype(np.uint8)


class PadTo(v2.Transform):
    """Pad at the bottom and right to at least ``size``: images with ``fill``, labels with ``label_fill``."""

    def __init__(self, size: int | Sequence[int], fill: float = 0.0, label_fill: int = 255) -> None:
        super().__init__()
        self.size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        self.fill = fill
        self.label_fill = label_fill

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = _spatial_size(flat_inputs)
        return {"padding": [0, 0, max(self.size[1] - width, 0), max(self.size[0] - height, 0)]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not any(params["padding"]):
            return inpt
        fill = self.label_fill if isinstance(inpt, tv_tensors.Mask) else self.fill
        return self._call_kernel(F.pad, inpt, params["padding"], fill=fill)


def train_transform(
    crop_size: int | Sequence[int],
    scale: Sequence[int],
    ratio_range: Sequence[float] | None = (0.5, 2.0),
    cat_max_ratio: float = 0.75,
    flip_prob: float = 0.5,
    photometric: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    ignore_index: int = 255,
) -> v2.Compose:
    """The official training pipeline for ``(uint8 Image, Mask)`` pairs.

    Args:
        crop_size: training crop ``(H, W)`` or one side.
        scale: the dataset scale ``(long, short)`` the random ratio multiplies.
        ratio_range: random resize ratio range; ``None`` for a fixed rescale to ``scale``.
        cat_max_ratio: the crop's largest allowed class share (``1.0`` disables).
        flip_prob: horizontal flip probability.
        photometric: include :class:`PhotoMetricDistortion`.
        mean: RGB mean on the 0-255 scale.
        std: RGB std on the 0-255 scale.
        ignore_index: label fill of the padding and the value the crop rule ignores.

    Returns:
        A transform mapping ``(Image (3, H, W) uint8, Mask (H, W))`` to
        ``(Image (3, *crop) float32 normalised, Mask (*crop))``.
    """
    steps: list[v2.Transform] = [
        RandomResize(scale, ratio_range),
        RandomCropCatMax(crop_size, cat_max_ratio, ignore_index),
        v2.RandomHorizontalFlip(flip_prob),
    ]
    if photometric:
        steps.append(PhotoMetricDistortion())
    steps += [
        v2.ToDtype(torch.float32, scale=False),
        v2.Normalize(list(mean), list(std)),
        PadTo(crop_size, fill=0.0, label_fill=ignore_index),
    ]
    return v2.Compose(steps)


def eval_transform(
    scale: Sequence[int] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """The official single-scale test preprocessing: optional keep-ratio resize of the image, normalise.

    The label is left at its original size (metrics compare at the label's size, as the official
    code resizes logits back to the original image).

    Args:
        scale: test scale ``(long, short)``; ``None`` keeps the image size.
        mean: RGB mean on the 0-255 scale.
        std: RGB std on the 0-255 scale.
    """
    steps: list[v2.Transform] = []
    if scale is not None:
        steps.append(_ImageOnly(RandomResize(scale, ratio_range=None)))
    steps += [v2.ToDtype(torch.float32, scale=False), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)


class _ImageOnly(v2.Transform):
    """Apply a transform to the image and pass the label through unchanged."""

    def __init__(self, inner: v2.Transform) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *inputs: Any) -> Any:
        image, *rest = inputs if len(inputs) > 1 else inputs[0]
        return (self.inner(image), *rest)


def apply_transform(
    transform: v2.Transform, image: torch.Tensor, label: torch.Tensor, seed: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a pair transform on plain tensors, optionally under its own random seed.

    With ``seed``, the augmentation depends on ``seed`` alone (torch's global CPU generator is
    seeded for the call and restored afterwards), whatever process or worker runs it: this is what
    makes a resumed or multi-process run draw the same augmentation as a single uninterrupted one.

    Args:
        transform: a v2 transform of ``(Image, Mask)`` pairs.
        image: ``(3, H, W)`` RGB, ``uint8`` 0-255.
        label: ``(H, W)`` class indices.
        seed: per-sample seed, or ``None`` to use the current global generator.

    Returns:
        ``(image, label)`` as plain tensors: ``(3, h, w)`` and ``(h, w)`` ``int64``.
    """
    if image.ndim != 3 or label.ndim != 2 or image.shape[-2:] != label.shape:
        raise ValueError(
            f"expected an image (3, H, W) and a label (H, W) of the same size, got {tuple(image.shape)} "
            f"and {tuple(label.shape)}"
        )
    pair = (tv_tensors.Image(image), tv_tensors.Mask(label))
    if seed is None:
        out_image, out_label = transform(*pair)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            out_image, out_label = transform(*pair)
    return out_image.as_subclass(torch.Tensor), out_label.as_subclass(torch.Tensor).to(torch.int64)
