"""Calibration windows for int8 quantization: the user's images cut as the test protocol feeds the
network (test resize, normalisation, sliding-window crops), for :func:`setr.export.export_model`."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from ..data.io import read_image
from .predictor import _normalisation, resolve_protocol
from .preprocess import normalize
from .resize import resize_image, single_scale_size
from .sliding import window_boxes

__all__ = ["CalibrationError", "CalibrationWindows"]

_SWAPPED_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that turn the picture a quarter


class CalibrationError(ValueError):
    """The calibration images cannot give the windows asked for (too few, or unreadable)."""


class CalibrationWindows:
    """``count`` normalised ``(1, C, crop, crop)`` float32 windows from ``images``, re-readable.

    Each image is resized by the model's test protocol (``test_scale`` / ``short_side``), normalised
    with its mean/std and cut into the protocol's sliding windows (whole-mode protocols: the
    resized image itself), as :class:`setr.inference.Predictor` would feed them. Windows are taken
    from the images in turn (the first window of every image, then the second, ...) so that a few
    hundred of them cover as many images as they can. Only the image headers are read up front;
    the pixels are read on every pass (NNCF iterates more than once), one image at a time.

    Args:
        images: image files (e.g. :func:`setr.inference.collect_images`'s, or a dataset's).
        model: the model (or exported network) whose protocol, mean and std apply.
        count: how many windows; fewer found is refused.

    Raises:
        CalibrationError: fewer than ``count`` windows in ``images``, or an image whose header
            cannot be read; the message names what it found and what it needs.
    """

    def __init__(self, images: Sequence[str | os.PathLike], model: nn.Module, count: int) -> None:
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError(f"count must be a positive integer, got {count!r}")
        self.protocol = resolve_protocol(model)
        self.mean, self.std = _normalisation(model)
        channels = int(getattr(getattr(model, "config", None), "in_chans", 3) or 3)
        if channels != 3:
            raise CalibrationError(f"calibration reads RGB images; this model takes {channels} channels")
        per_image = []
        for path in map(Path, images):
            height, width = single_scale_size(*_header_size(path), self.protocol)
            if self.protocol.mode == "slide":
                boxes = window_boxes(height, width, self.protocol.crop, self.protocol.stride)
            else:
                boxes = [(0, height, 0, width)]
            per_image.append((path, (height, width), boxes))
        found = sum(len(boxes) for _, _, boxes in per_image)
        if found < count:
            raise CalibrationError(
                f"{found} calibration windows in {len(per_image)} images, {count} needed: give more images "
                "or ask for fewer windows"
            )
        chosen: list[list[tuple[int, int, int, int]]] = [[] for _ in per_image]
        taken, turn = 0, 0
        while taken < count:  # round robin over the images
            for index, (_, _, boxes) in enumerate(per_image):
                if turn < len(boxes) and taken < count:
                    chosen[index].append(boxes[turn])
                    taken += 1
            turn += 1
        self._plan = [(path, size, boxes) for (path, size, _), boxes in zip(per_image, chosen) if boxes]
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.count} windows from {len(self._plan)} images, {self.protocol.mode})"

    def __iter__(self) -> Iterator[torch.Tensor]:
        for path, size, boxes in self._plan:
            image = read_image(path)
            resized = resize_image(image[None], size)
            normalised = normalize(resized.float(), self.mean, self.std)
            for y1, y2, x1, x2 in boxes:
                yield normalised[:, :, y1:y2, x1:x2].contiguous()


def _header_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` of the picture ``path`` holds, upright, from its header alone."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            turned = image.getexif().get(0x0112) in _SWAPPED_ORIENTATIONS
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise CalibrationError(f"{path}: not a readable image ({type(error).__name__}); remove it or fix it") from None
    return (width, height) if turned else (height, width)
