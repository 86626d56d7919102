"""A procedurally generated segmentation dataset: textured and shaped objects on cluttered scenes.

Every sample is made in code from ``(seed, split, index)`` alone, so the dataset needs no download,
is identical on every machine and in every process, and can be read in any order.

What makes it a real (if small) segmentation problem:

* colour alone does not tell the classes: each object class takes one of its colours from a hue
  band of its own, but the background gradient and its clutter take any colour, so a patch of
  "stripes red" is an object only if it is striped (a pixel-wise colour classifier learns nothing);
* the texture classes (stripes, checks, dots, speckle) have random shapes, orientations, scales
  and second colours, so the network must recognise the texture;
* the shape classes (ring, cross) are flat-coloured, like the background's distractor discs,
  squares and bars, so the network must recognise the shape (a ring is not a disc);
* objects overlap (later ones occlude earlier ones, and the label follows), are cut by the image
  border, and the whole image gets a shading gradient, low-frequency blotches and pixel noise.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

from .meta import DatasetInfo, EvalProtocol, label_colormap

__all__ = ["SYNTHETIC_CLASSES", "SyntheticShapes", "synthetic_info"]

SYNTHETIC_CLASSES = ("background", "stripes", "checks", "dots", "ring", "cross", "speckle")
"""All classes of the generator, in label order; a dataset uses the first ``num_classes``."""

_SPLITS = {"train": 0, "val": 1, "test": 2}


def synthetic_info(num_classes: int = 5, size: tuple[int, int] = (160, 160)) -> DatasetInfo:
    """The :class:`~setr.data.meta.DatasetInfo` of a :class:`SyntheticShapes` configuration.

    Args:
        num_classes: how many of :data:`SYNTHETIC_CLASSES` are used (2 to 7), background included.
        size: generated ``(H, W)``; it is the dataset's scale and the whole-image test size.
    """
    _check_num_classes(num_classes)
    side = max(size)
    return DatasetInfo(
        name="synthetic",
        class_names=SYNTHETIC_CLASSES[:num_classes],
        palette=tuple(label_colormap(num_classes)),
        protocol=EvalProtocol(mode="whole", crop=side, stride=side, test_scale=None, ms_ratios=(1.0,)),
    )


def _check_num_classes(num_classes: int) -> None:
    if not 2 <= num_classes <= len(SYNTHETIC_CLASSES):
        raise ValueError(f"num_classes must be in [2, {len(SYNTHETIC_CLASSES)}], got {num_classes}")


class SyntheticShapes(Dataset):
    """Generated scenes with their per-pixel labels.

    ``dataset[i]`` is ``(image, label)``: ``image`` a ``(3, H, W)`` ``uint8`` RGB tensor, ``label``
    a ``(H, W)`` ``int64`` tensor of class indices in ``[0, num_classes)``. Sample ``i`` depends only
    on ``(seed, split, i)``.

    Example:
        >>> data = SyntheticShapes(num_samples=100, split="val")
        >>> image, label = data[0]  # (3, 160, 160) uint8, (160, 160) int64
    """

    def __init__(
        self,
        num_samples: int = 1000,
        size: tuple[int, int] | int = (160, 160),
        num_classes: int = 5,
        split: str = "train",
        seed: int = 0,
        max_objects: int = 5,
        noise: float = 8.0,
    ) -> None:
        """
        Args:
            num_samples: dataset length.
            size: image ``(H, W)`` (or one side for squares).
            num_classes: how many of :data:`SYNTHETIC_CLASSES` to use (2 to 7), background included.
            split: ``"train"``, ``"val"`` or ``"test"``: disjoint streams of samples.
            seed: the generator's seed; the same seed gives the same dataset everywhere.
            max_objects: most labelled objects per image (at least 1 is drawn).
            noise: standard deviation of the Gaussian pixel noise, on the 0-255 scale.
        """
        _check_num_classes(num_classes)
        if split not in _SPLITS:
            raise ValueError(f"unknown split {split!r}: choose one of {', '.join(_SPLITS)}")
        self.size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if min(self.size) < 32:
            raise ValueError(f"size {self.size} is too small: use at least 32 pixels a side")
        self.num_samples = num_samples
        self.num_classes = num_classes
        self.split = split
        self.seed = seed
        self.max_objects = max(1, max_objects)
        self.noise = noise
        self.info = synthetic_info(num_classes, self.size)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -self.num_samples <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        image, label = self.generate(index % self.num_samples)
        return torch.from_numpy(image).permute(2, 0, 1).contiguous(), torch.from_numpy(label)

    def generate(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``index`` as numpy arrays: ``(H, W, 3)`` uint8 RGB and ``(H, W)`` int64 labels."""
        rng = np.random.default_rng([self.seed, _SPLITS[self.split], index])
        height, width = self.size
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        canvas = _background(rng, height, width, ys, xs)
        label = np.zeros((height, width), dtype=np.int64)

        # Distractors and objects are interleaved so that distractors also occlude objects.
        scale = min(height, width)
        layers = [("distractor", 0)] * int(rng.integers(3, 9))
        layers += [
            ("object", int(rng.integers(1, self.num_classes))) for _ in range(rng.integers(1, self.max_objects + 1))
        ]
        for kind, cls in (layers[i] for i in rng.permutation(len(layers))):
            centre = (rng.uniform(-0.05, 1.05) * height, rng.uniform(-0.05, 1.05) * width)
            if kind == "distractor":
                region = _distractor_shape(rng, ys, xs, centre, scale)
                canvas[region] = _colour(rng)
                label[region] = 0
                continue
            radius = rng.uniform(0.12, 0.28) * scale
            if SYNTHETIC_CLASSES[cls] in ("ring", "cross"):
                region = _shape_class_region(rng, SYNTHETIC_CLASSES[cls], ys, xs, centre, radius)
                canvas[region] = _class_colour(rng, cls)
            else:
                region = _random_shape(rng, ys, xs, centre, radius)
                texture = _texture(rng, cls, ys, xs)
                canvas[region] = texture[region]
            label[region] = cls

        canvas += _shading(rng, height, width, ys, xs)[..., None]
        canvas += self.noise * rng.standard_normal(canvas.shape, dtype=np.float32)
        return np.clip(canvas, 0, 255).round().astype(np.uint8), label


# ------------------------------------------------------------------------------------ drawing
def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(20, 235, 3).astype(np.float32)


_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Hue (degrees) of each object class's colour band, in SYNTHETIC_CLASSES order after the background.
_CLASS_HUES = (0, 120, 240, 60, 180, 300)


def _class_colour(rng: np.random.Generator, cls: int) -> np.ndarray:
    """A colour from class ``cls``'s own hue band (60 degrees apart, +-20 wide), any saturation/brightness."""
    hue = (_CLASS_HUES[cls - 1] + rng.uniform(-20, 20)) % 360
    saturation, value = rng.uniform(0.45, 1.0), rng.uniform(0.4, 0.95)
    sector = (np.array([5.0, 3.0, 1.0]) + hue / 60) % 6  # HSV -> RGB, channel by channel
    weight = np.clip(np.minimum(sector, 4 - sector), 0, 1)
    return (255 * value * (1 - saturation * weight)).astype(np.float32)


def _contrasting_colour(rng: np.random.Generator, first: np.ndarray) -> np.ndarray:
    """Any colour whose brightness differs from ``first`` enough for a texture to show."""
    while True:
        second = _colour(rng)
        if abs(float((first - second) @ _LUMA)) > 80:
            return second


def _rotated(rng: np.random.Generator, ys: np.ndarray, xs: np.ndarray, centre=(0.0, 0.0)):
    """Coordinates ``(u, v)`` relative to ``centre`` in a frame rotated by a random angle."""
    angle = rng.uniform(0, math.pi)
    dy, dx = ys - centre[0], xs - centre[1]
    return dx * math.cos(angle) + dy * math.sin(angle), -dx * math.sin(angle) + dy * math.cos(angle)


def _background(rng: np.random.Generator, height: int, width: int, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """A two-colour gradient with low-frequency blotches: ``(H, W, 3)`` float32."""
    start, end = _colour(rng), _colour(rng)
    u, _ = _rotated(rng, ys, xs, (height / 2, width / 2))
    t = ((u - u.min()) / max(float(u.max() - u.min()), 1.0))[..., None]
    canvas = start * (1 - t) + end * t
    blotches = rng.normal(0.0, 25.0, (4, 4, 3)).astype(np.float32)
    canvas += _upsample(blotches, height, width)
    return canvas.astype(np.float32)


def _upsample(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a small ``(h, w, C)`` grid to ``(height, width, C)``, as two matrix products."""
    rows = _interpolation_matrix(grid.shape[0], height)
    cols = _interpolation_matrix(grid.shape[1], width)
    return np.stack([rows @ grid[..., c] @ cols.T for c in range(grid.shape[2])], axis=-1)


def _interpolation_matrix(source: int, target: int) -> np.ndarray:
    """``(target, source)`` weights of a linear interpolation with the end points aligned."""
    position = np.linspace(0, source - 1, target)
    low = np.clip(np.floor(position).astype(int), 0, source - 2)
    frac = (position - low).astype(np.float32)
    matrix = np.zeros((target, source), dtype=np.float32)
    matrix[np.arange(target), low] = 1 - frac
    matrix[np.arange(target), low + 1] = frac
    return matrix


def _shading(rng: np.random.Generator, height: int, width: int, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """A global illumination ramp, ``(H, W)``: the same object looks lighter or darker by place."""
    u, _ = _rotated(rng, ys, xs, (height / 2, width / 2))
    return (u / max(height, width) * rng.uniform(-60, 60)).astype(np.float32)


def _random_shape(rng, ys, xs, centre, radius) -> np.ndarray:
    """An ellipse, a rotated rectangle or a triangle: ``(H, W)`` bool."""
    u, v = _rotated(rng, ys, xs, centre)
    aspect = rng.uniform(0.5, 1.0)
    kind = rng.integers(3)
    if kind == 0:
        return (u / radius) ** 2 + (v / (radius * aspect)) ** 2 <= 1.0
    if kind == 1:
        return (np.abs(u) <= radius) & (np.abs(v) <= radius * aspect)
    # triangle: inside three half-planes at 120 degrees
    inside = np.ones_like(u, dtype=bool)
    for k in range(3):
        angle = 2 * math.pi * k / 3
        inside &= u * math.cos(angle) + v * math.sin(angle) <= radius * 0.6
    return inside


def _shape_class_region(rng, name: str, ys, xs, centre, radius) -> np.ndarray:
    u, v = _rotated(rng, ys, xs, centre)
    if name == "ring":
        aspect = rng.uniform(0.7, 1.0)
        r = np.sqrt(u**2 + (v / aspect) ** 2)
        return (r <= radius) & (r >= radius * rng.uniform(0.45, 0.7))
    arm = radius * rng.uniform(0.25, 0.4)  # cross: two bars
    return ((np.abs(u) <= radius) & (np.abs(v) <= arm)) | ((np.abs(v) <= radius) & (np.abs(u) <= arm))


def _distractor_shape(rng, ys, xs, centre, scale: float) -> np.ndarray:
    """Background clutter: filled discs, squares and thin bars (never rings or crosses)."""
    u, v = _rotated(rng, ys, xs, centre)
    kind = rng.integers(3)
    if kind == 0:
        return u**2 + v**2 <= (rng.uniform(0.05, 0.2) * scale) ** 2
    if kind == 1:
        half = rng.uniform(0.05, 0.18) * scale
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    return (np.abs(u) <= rng.uniform(0.2, 0.6) * scale) & (np.abs(v) <= rng.uniform(0.5, 2.5))


def _texture(rng, cls: int, ys, xs) -> np.ndarray:
    """A full-frame ``(H, W, 3)`` texture of class ``cls``: one colour from its hue band, one contrasting."""
    name = SYNTHETIC_CLASSES[cls]
    first = _class_colour(rng, cls)
    second = _contrasting_colour(rng, first)
    u, v = _rotated(rng, ys, xs)
    if name == "stripes":
        mask = np.sin(2 * math.pi * u / rng.uniform(8, 14)) > 0
    elif name == "checks":
        cell = rng.uniform(4, 7)
        mask = (np.floor(u / cell) + np.floor(v / cell)) % 2 == 0
    elif name == "dots":
        spacing = rng.uniform(8, 12)
        du = u - spacing * np.round(u / spacing)
        dv = v - spacing * np.round(v / spacing)
        mask = du**2 + dv**2 <= (spacing * rng.uniform(0.25, 0.35)) ** 2
    elif name == "speckle":
        mask = rng.random(u.shape) < 0.5
    else:
        raise ValueError(f"{name!r} is not a texture class")
    return np.where(mask[..., None], first, second).astype(np.float32)
