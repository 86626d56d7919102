"""Evaluation datasets in their official layouts, and a plain folder layout for users' own data.

Every dataset yields ``{"image": (3, H, W) uint8 RGB tensor, "mask": (H, W) int64 tensor,
"name", "image_path", "mask_path"}``, masks already in the model's label space (Cityscapes
trainIds, ADE20K without its "other" class, ...), ``ignore_index`` where not labelled.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .io import IMAGE_EXTENSIONS, ImageReadError, read_image, read_mask
from .meta import DATASETS, label_colormap

__all__ = [
    "ADE20K",
    "CITYSCAPES_TRAIN_IDS",
    "DATASET_READERS",
    "Cityscapes",
    "DatasetLayoutError",
    "FolderDataset",
    "PascalContext",
    "SegmentationDataset",
    "build_dataset",
    "sample_pair",
]


class DatasetLayoutError(FileNotFoundError):
    """A dataset root that does not have the expected folders and files."""


CITYSCAPES_TRAIN_IDS: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
"""Cityscapes ``labelId -> trainId`` of the 19 evaluated classes (cityscapesScripts' label table); other ids are ignored."""


def _lookup_table(mapping: dict[int, int], ignore_index: int) -> np.ndarray:
    table = np.full(65536, ignore_index, dtype=np.int64)
    for source, target in mapping.items():
        table[source] = target
    return table


class SegmentationDataset(Dataset):
    """A list of ``(image, mask)`` files plus what is needed to read them in the model's label space.

    Subclasses find the files; this class reads, checks and maps them.
    """

    def __init__(
        self,
        samples: Sequence[tuple[Path, Path]],
        class_names: Sequence[str],
        *,
        palette: Sequence[Sequence[int]] | None = None,
        ignore_index: int = 255,
        reduce_zero_label: bool = False,
        label_map: dict[int, int] | None = None,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        """
        Args:
            samples: ``(image_path, mask_path)`` pairs.
            class_names: the classes, in label order.
            palette: one RGB colour per class (default: the VOC colour map).
            ignore_index: label of pixels that are not evaluated.
            reduce_zero_label: stored label 0 means "unlabelled": it becomes ``ignore_index`` and
                every other label ``k`` becomes ``k - 1`` (ADE20K).
            label_map: stored label -> class index; labels not in it become ``ignore_index``
                (Cityscapes labelIds).
            transform: applied to each sample dict before it is returned.
        """
        self.samples = [(Path(i), Path(m)) for i, m in samples]
        self.class_names = list(class_names)
        self.palette = [tuple(c) for c in (palette or label_colormap(len(self.class_names)))]
        self.ignore_index = ignore_index
        self.reduce_zero_label = reduce_zero_label
        self._table = _lookup_table(label_map, ignore_index) if label_map is not None else None
        self.transform = transform

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images, {self.num_classes} classes)"

    def name_of(self, index: int) -> str:
        return self.samples[index][0].stem

    def load_mask(self, path: Path) -> torch.Tensor:
        """A mask file mapped to class indices ``(H, W)`` int64, ``ignore_index`` where unlabelled."""
        mask = read_mask(path)
        if self._table is not None:
            if mask.min() < 0 or mask.max() >= len(self._table):
                raise ImageReadError(f"{path}: label values outside 0..{len(self._table) - 1}")
            mask = self._table[mask]
        if self.reduce_zero_label:
            mask = np.where(mask == 0, self.ignore_index, mask - 1)
            mask[mask == self.ignore_index - 1] = self.ignore_index
        return torch.from_numpy(np.ascontiguousarray(mask))

    def _check_labels(self, mask: torch.Tensor, path: Path) -> torch.Tensor:
        """Refuse label values that are neither a class nor the ignore index: a wrong dataset or
        class count, not something to ignore silently."""
        bad = (mask >= self.num_classes) & (mask != self.ignore_index) | (mask < 0)
        if bad.any():
            values = sorted(set(mask[bad].unique().tolist()))[:5]
            raise ImageReadError(
                f"{path}: label values {values} are neither classes 0..{self.num_classes - 1} "
                f"nor the ignore index {self.ignore_index}"
            )
        return mask

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_path, mask_path = self.samples[index]
        image = read_image(image_path)
        mask = self._check_labels(self.load_mask(mask_path), mask_path)
        if tuple(image.shape[-2:]) != tuple(mask.shape):
            raise ImageReadError(
                f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image {image_path.name} is "
                f"{image.shape[2]}x{image.shape[1]} (width x height); masks must match their images"
            )
        sample = {
            "image": image,
            "mask": mask,
            "name": self.name_of(index),
            "image_path": str(image_path),
            "mask_path": str(mask_path),
        }
        return self.transform(sample) if self.transform is not None else sample


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetLayoutError(f"{path}: missing {what} folder")
    return path


def _pair_by_suffix(
    image_dir: Path, mask_dir: Path, image_suffix: str, mask_suffixes: Sequence[str], recursive: bool
) -> list[tuple[Path, Path]]:
    pattern = f"**/*{image_suffix}" if recursive else f"*{image_suffix}"
    pairs, missing = [], []
    for image in sorted(image_dir.glob(pattern)):
        stem = image.name[: -len(image_suffix)]
        rel = image.parent.relative_to(image_dir)
        candidates = [mask_dir / rel / f"{stem}{suffix}" for suffix in mask_suffixes]
        mask = next((c for c in candidates if c.is_file()), None)
        if mask is None:
            missing.append(candidates[0])
        else:
            pairs.append((image, mask))
    if missing:
        raise DatasetLayoutError(
            f"{missing[0]}: mask file missing ({len(missing)} of {len(missing) + len(pairs)} images have no mask)"
        )
    if not pairs:
        raise DatasetLayoutError(f"{image_dir}: no *{image_suffix} images found")
    return pairs


class Cityscapes(SegmentationDataset):
    """Cityscapes fine annotations, 19 classes.

    Layout (the official download)::

        root/leftImg8bit/{split}/{city}/{name}_leftImg8bit.png
        root/gtFine/{split}/{city}/{name}_gtFine_labelIds.png   (or *_labelTrainIds.png)

    ``labelIds`` are mapped to the 19 trainIds (others -> 255); a ``labelTrainIds`` file is used
    as is when there is no ``labelIds`` file.
    """

    def __init__(self, root: str | os.PathLike, split: str = "val", **kwargs: Any) -> None:
        root = Path(root)
        images = _require_dir(root / "leftImg8bit" / split, f"Cityscapes leftImg8bit/{split}")
        masks = _require_dir(root / "gtFine" / split, f"Cityscapes gtFine/{split}")
        pairs = _pair_by_suffix(
            images, masks, "_leftImg8bit.png", ("_gtFine_labelIds.png", "_gtFine_labelTrainIds.png"), True
        )
        info = DATASETS["cityscapes"]
        super().__init__(pairs, info.class_names, palette=info.palette, ignore_index=info.ignore_index, **kwargs)
        self._train_ids = _lookup_table(CITYSCAPES_TRAIN_IDS, info.ignore_index)

    def name_of(self, index: int) -> str:
        return self.samples[index][0].name[: -len("_leftImg8bit.png")]

    def load_mask(self, path: Path) -> torch.Tensor:
        mask = read_mask(path)
        if path.name.endswith("_labelIds.png"):
            if mask.min() < 0 or mask.max() > 255:
                raise ImageReadError(f"{path}: labelIds outside 0..255")
            mask = self._train_ids[mask]
        return torch.from_numpy(np.ascontiguousarray(mask))


class ADE20K(SegmentationDataset):
    """ADE20K (SceneParsing challenge), 150 classes; stored label 0 ("other") is ignored.

    Layout (``root`` is ``ADEChallengeData2016`` or the folder holding it)::

        ADEChallengeData2016/images/{training,validation}/*.jpg
        ADEChallengeData2016/annotations/{training,validation}/*.png
    """

    _SPLITS = {"train": "training", "val": "validation", "training": "training", "validation": "validation"}

    def __init__(self, root: str | os.PathLike, split: str = "val", **kwargs: Any) -> None:
        root = Path(root)
        if (root / "ADEChallengeData2016").is_dir():
            root = root / "ADEChallengeData2016"
        if split not in self._SPLITS:
            raise ValueError(f"unknown ADE20K split {split!r}; choose train or val")
        folder = self._SPLITS[split]
        images = _require_dir(root / "images" / folder, f"ADE20K images/{folder}")
        masks = _require_dir(root / "annotations" / folder, f"ADE20K annotations/{folder}")
        pairs = _pair_by_suffix(images, masks, ".jpg", (".png",), False)
        info = DATASETS["ade20k"]
        super().__init__(
            pairs, info.class_names, palette=info.palette, ignore_index=info.ignore_index,
            reduce_zero_label=True, **kwargs,
        )  # fmt: skip


class PascalContext(SegmentationDataset):
    """Pascal Context (VOC2010 + the Context annotations).

    Layout (``root`` is ``VOC2010``, ``VOCdevkit`` or the folder holding ``VOCdevkit``)::

        VOC2010/JPEGImages/{id}.jpg
        VOC2010/SegmentationClassContext/{id}.png
        VOC2010/ImageSets/SegmentationContext/{train,val}.txt

    Args:
        num_classes: ``60`` (the official SETR setting: background is class 0 and is evaluated) or
            ``59`` (labels shifted down by one, background ignored, for models with 59 outputs).
            To score a 60-class model by the 59-class convention, keep 60 here and build the
            metric with ``ConfusionMatrix(60, exclude_classes=[0])``.
    """

    def __init__(self, root: str | os.PathLike, split: str = "val", num_classes: int = 60, **kwargs: Any) -> None:
        root = Path(root)
        for candidate in (root / "VOCdevkit" / "VOC2010", root / "VOC2010"):
            if candidate.is_dir():
                root = candidate
                break
        if num_classes not in (59, 60):
            raise ValueError(f"Pascal Context has 60 (with background) or 59 classes, not {num_classes}")
        images = _require_dir(root / "JPEGImages", "Pascal VOC2010 JPEGImages")
        masks = _require_dir(root / "SegmentationClassContext", "Pascal Context SegmentationClassContext")
        split_file = root / "ImageSets" / "SegmentationContext" / f"{split}.txt"
        if not split_file.is_file():
            raise DatasetLayoutError(f"{split_file}: missing Pascal Context split file")
        ids = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
        if not ids:
            raise DatasetLayoutError(f"{split_file}: the split lists no images")
        pairs = [(images / f"{i}.jpg", masks / f"{i}.png") for i in ids]
        for image, mask in pairs:
            for path in (image, mask):
                if not path.is_file():
                    raise DatasetLayoutError(f"{path}: listed in {split_file.name} but missing")
        info = DATASETS["pcontext"]
        names, palette = info.class_names, info.palette
        if num_classes == 59:
            names, palette = names[1:], palette[1:]
        super().__init__(
            pairs, names, palette=palette, ignore_index=info.ignore_index,
            reduce_zero_label=num_classes == 59, **kwargs,
        )  # fmt: skip


class FolderDataset(SegmentationDataset):
    """Your own data: ``images/`` + ``masks/`` + a class list.

    Layout::

        root/images/<name>.<jpg|png|...>      (sub-folders allowed)
        root/masks/<name>.png                 (same relative path and stem; grey or palette PNG of class indices)
        root/classes.txt                      (one class name per line, in label order; '#' starts a comment)

    Mask values must be class indices ``0..C-1`` or ``ignore_index``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        classes: str | os.PathLike | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            root: the dataset folder.
            split: optional sub-folder of ``images/`` and ``masks/`` (e.g. ``val``); ``None`` uses them directly.
            classes: the class names, or a class list file (default ``root/classes.txt``).
            **kwargs: :class:`SegmentationDataset` options (``ignore_index``, ``reduce_zero_label``, ``transform``, ...).
        """
        root = Path(root)
        images = _require_dir(root / "images" / (split or ""), "images/")
        masks = _require_dir(root / "masks" / (split or ""), "masks/")
        if classes is None or isinstance(classes, (str, os.PathLike)):
            class_file = Path(classes) if classes is not None else root / "classes.txt"
            if not class_file.is_file():
                raise DatasetLayoutError(f"{class_file}: missing class list (one class name per line)")
            names = [line.split("#", 1)[0].strip() for line in class_file.read_text().splitlines()]
            names = [n for n in names if n]
            if not names:
                raise DatasetLayoutError(f"{class_file}: the class list is empty")
        else:
            names = list(classes)
        pairs, missing = [], []
        for image in sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS):
            mask = masks / image.relative_to(images).with_suffix(".png")
            (pairs if mask.is_file() else missing).append((image, mask))
        if missing:
            raise DatasetLayoutError(
                f"{missing[0][1]}: mask file missing ({len(missing)} of {len(missing) + len(pairs)} images have no mask)"
            )
        if not pairs:
            raise DatasetLayoutError(f"{images}: no images found ({', '.join(IMAGE_EXTENSIONS)})")
        super().__init__(pairs, names, **kwargs)


DATASET_READERS: dict[str, type[SegmentationDataset]] = {
    "cityscapes": Cityscapes,
    "ade20k": ADE20K,
    "pcontext": PascalContext,
    "folder": FolderDataset,
}
"""Dataset name (as in :data:`setr.data.meta.DATASETS`, plus ``folder``) -> reader class."""


def build_dataset(name: str, root: str | os.PathLike, split: str | None = None, **kwargs: Any) -> SegmentationDataset:
    """The reader of ``name`` on ``root``.

    Args:
        name: ``cityscapes``, ``ade20k``, ``pcontext`` or ``folder``.
        root: the dataset folder.
        split: the split; ``None`` means the reader's default (``val``; no split for ``folder``).
        **kwargs: reader options (e.g. ``num_classes=59`` for ``pcontext``, ``classes`` for ``folder``).

    Raises:
        KeyError: unknown dataset name.
        DatasetLayoutError: ``root`` does not have the dataset's layout (the message names what is missing).
    """
    if name not in DATASET_READERS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASET_READERS)}")
    if not Path(root).is_dir():
        raise DatasetLayoutError(f"{root}: dataset root is not a folder")
    if split is not None:
        kwargs["split"] = split
    return DATASET_READERS[name](root, **kwargs)


def sample_pair(sample: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(image, label)`` of a sample given as a pair or as a ``{"image", "mask"}`` dict (the
    :mod:`setr.data.datasets` readers)."""
    if isinstance(sample, dict):
        return sample["image"], sample["mask"]
    image, label = sample
    return image, label
