"""Dataset readers on tiny trees written in the real formats, and the 59-class metric convention."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from setr.data.datasets import ADE20K, Cityscapes, DatasetLayoutError, FolderDataset, PascalContext, build_dataset
from setr.data.io import ImageReadError
from setr.metrics import ConfusionMatrix


def write_image(path: Path, height: int, width: int, seed: int = 0) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def write_mask(path: Path, labels: np.ndarray, palette: bool = False) -> None:
    """A grey (``L``) PNG of class indices, or a palette (``P``) PNG whose indices are the labels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(labels.astype(np.uint8), mode="P" if palette else "L")
    if palette:
        image.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    image.save(path)


def cityscapes_tree(root: Path) -> np.ndarray:
    labels = np.array([[7, 8, 26, 0], [33, 24, 4, 255]])  # road, sidewalk, car, unlabeled / bicycle, person, static, ?
    for city, name in (("frankfurt", "frankfurt_000000_000294"), ("lindau", "lindau_000001_000019")):
        write_image(root / "leftImg8bit" / "val" / city / f"{name}_leftImg8bit.png", 2, 4)
        write_mask(root / "gtFine" / "val" / city / f"{name}_gtFine_labelIds.png", labels)
    return labels


def test_cityscapes_maps_label_ids_to_train_ids(tmp_path):
    cityscapes_tree(tmp_path)
    dataset = Cityscapes(tmp_path, "val")
    assert len(dataset) == 2 and dataset.num_classes == 19
    sample = dataset[0]
    assert sample["name"] == "frankfurt_000000_000294"
    assert sample["image"].shape == (3, 2, 4) and sample["image"].dtype == torch.uint8
    assert sample["mask"].tolist() == [[0, 1, 13, 255], [18, 11, 255, 255]]
    with pytest.raises(DatasetLayoutError, match="leftImg8bit/train"):
        Cityscapes(tmp_path, "train")


def test_cityscapes_uses_train_id_files_when_label_ids_are_absent(tmp_path):
    cityscapes_tree(tmp_path)
    train_ids = np.array([[0, 1, 13, 255], [18, 11, 255, 255]])
    for path in (tmp_path / "gtFine").rglob("*_labelIds.png"):
        path.unlink()
        write_mask(path.with_name(path.name.replace("_labelIds", "_labelTrainIds")), train_ids)
    assert Cityscapes(tmp_path)[1]["mask"].tolist() == train_ids.tolist()
    # labelIds saved under a labelTrainIds name: values beyond 18 are an error, not silently ignored
    for path in (tmp_path / "gtFine").rglob("*_labelTrainIds.png"):
        write_mask(path, np.array([[7, 8, 26, 0], [33, 24, 4, 255]]))
    with pytest.raises(ImageReadError, match=r"label values \[24, 26, 33\] are neither classes 0..18"):
        Cityscapes(tmp_path)[0]


def test_ade20k_reduces_the_zero_label(tmp_path):
    base = tmp_path / "ADEChallengeData2016"
    (base / "images" / "validation").mkdir(parents=True)
    Image.new("RGB", (2, 3), (200, 100, 50)).save(base / "images" / "validation" / "ADE_val_00000001.jpg")
    write_mask(base / "annotations" / "validation" / "ADE_val_00000001.png", np.array([[0, 1], [150, 2], [255, 0]]))
    for root in (tmp_path, base):  # the folder holding ADEChallengeData2016, or the folder itself
        sample = ADE20K(root, "val")[0]
        assert sample["mask"].tolist() == [[255, 0], [149, 1], [255, 255]]
    # RGB order, (3, H, W); JPEG is lossy, so only close to the colour written.
    assert sample["image"].shape == (3, 3, 2)
    assert (sample["image"][:, 0, 0].int() - torch.tensor([200, 100, 50])).abs().max() <= 3
    with pytest.raises(DatasetLayoutError, match="images/training"):
        ADE20K(tmp_path, "train")


def pascal_tree(root: Path) -> Path:
    voc = root / "VOCdevkit" / "VOC2010"
    for i, name in enumerate(("2008_000002", "2008_000003")):
        write_image(voc / "JPEGImages" / f"{name}.jpg", 2, 3, seed=i)
        write_mask(voc / "SegmentationClassContext" / f"{name}.png", np.array([[0, 1, 59], [15, 0, 2]]), palette=i == 1)
    split = voc / "ImageSets" / "SegmentationContext"
    split.mkdir(parents=True)
    (split / "val.txt").write_text("2008_000002\n2008_000003\n")
    (split / "train.txt").write_text("2008_000002\n2008_999999\n")
    return voc


def test_pascal_context_60_and_59_classes(tmp_path):
    voc = pascal_tree(tmp_path)
    for root in (tmp_path, tmp_path / "VOCdevkit", voc):
        sixty = PascalContext(root, "val")
        assert len(sixty) == 2 and sixty.num_classes == 60 and sixty.class_names[0] == "background"
    assert sixty[0]["mask"].tolist() == [[0, 1, 59], [15, 0, 2]]
    assert sixty[1]["mask"].tolist() == [[0, 1, 59], [15, 0, 2]]  # palette PNG: the indices, not colours
    fifty_nine = PascalContext(tmp_path, "val", num_classes=59)
    assert fifty_nine.num_classes == 59 and fifty_nine.class_names[0] == "aeroplane"
    assert fifty_nine[0]["mask"].tolist() == [[255, 0, 58], [14, 255, 1]]
    with pytest.raises(DatasetLayoutError, match="2008_999999.jpg"):
        PascalContext(tmp_path, "train")
    with pytest.raises(DatasetLayoutError, match="SegmentationContext/test.txt"):
        PascalContext(tmp_path, "test")


def folder_tree(root: Path) -> None:
    write_image(root / "images" / "a.jpg", 4, 5, seed=1)
    write_image(root / "images" / "sub" / "b.png", 3, 3, seed=2)
    write_mask(root / "masks" / "a.png", np.array([[0, 1, 2, 255, 1]] * 4))
    write_mask(root / "masks" / "sub" / "b.png", np.zeros((3, 3)))
    (root / "classes.txt").write_text("# my classes\nsky\nroad\n\ncar  # cars and vans\n")


def test_folder_dataset_reads_images_masks_and_classes(tmp_path):
    folder_tree(tmp_path)
    dataset = build_dataset("folder", tmp_path)
    assert dataset.class_names == ["sky", "road", "car"] and len(dataset) == 2
    names = [dataset[i]["name"] for i in range(2)]
    assert names == ["a", "b"]
    assert dataset[0]["mask"].tolist()[0] == [0, 1, 2, 255, 1]
    assert dataset[1]["image"].shape == (3, 3, 3)
    explicit = FolderDataset(tmp_path, classes=["x", "y", "z", "w"])
    assert explicit.num_classes == 4


def test_folder_dataset_errors_name_the_file(tmp_path):
    folder_tree(tmp_path)
    write_mask(tmp_path / "masks" / "a.png", np.array([[0, 7], [1, 1]]))  # wrong size and a bad label
    dataset = FolderDataset(tmp_path)
    with pytest.raises(ImageReadError, match=r"masks/a\.png: label values \[7\]"):
        dataset[0]
    write_mask(tmp_path / "masks" / "a.png", np.zeros((2, 2)))
    with pytest.raises(ImageReadError, match=r"masks/a\.png: mask is 2x2 but its image a\.jpg is 5x4"):
        dataset[0]
    Image.new("RGB", (5, 4)).save(tmp_path / "masks" / "a.png")
    with pytest.raises(ImageReadError, match="class index per pixel"):
        dataset[0]
    (tmp_path / "images" / "sub" / "b.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ImageReadError, match=r"b\.png: cannot read as an image"):
        dataset[1]
    (tmp_path / "images" / "c.jpg").write_bytes(b"")
    with pytest.raises(DatasetLayoutError, match=r"masks/c\.png: mask file missing"):
        FolderDataset(tmp_path)
    (tmp_path / "classes.txt").unlink()
    with pytest.raises(DatasetLayoutError, match="classes.txt: missing class list"):
        FolderDataset(tmp_path)


def test_wrong_roots_are_explained(tmp_path):
    with pytest.raises(DatasetLayoutError, match="not a folder"):
        build_dataset("cityscapes", tmp_path / "nowhere")
    with pytest.raises(DatasetLayoutError, match="leftImg8bit/val"):
        build_dataset("cityscapes", tmp_path)
    with pytest.raises(DatasetLayoutError, match="JPEGImages"):
        build_dataset("pcontext", tmp_path)
    with pytest.raises(KeyError, match="known: cityscapes"):
        build_dataset("coco", tmp_path)


def test_59_class_convention_on_a_60_class_model():
    # truth: background (0) on the first row; classes 1 and 2 below
    target = torch.tensor([[0, 0, 0], [1, 1, 2]])
    prediction = torch.tensor([[1, 0, 2], [1, 0, 2]])
    metric = ConfusionMatrix(3, exclude_classes=[0], class_names=["background", "a", "b"])
    metric.update(prediction, target)
    result = metric.compute()
    # background pixels are not counted; the class-1 pixel predicted as background is a miss.
    assert result["IoU"] == pytest.approx([1 / 2, 1.0])
    assert result["Acc"] == pytest.approx([1 / 2, 1.0])
    assert result["mIoU"] == pytest.approx(0.75) and result["aAcc"] == pytest.approx(2 / 3)
    assert "background" not in metric.table() and metric.kept_classes == [1, 2]
    with pytest.raises(ValueError, match="exclude_classes"):
        ConfusionMatrix(3, exclude_classes=[3])
