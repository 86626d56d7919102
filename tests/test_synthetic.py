"""The generated dataset: deterministic, well-formed, and its labels match what is drawn."""

from __future__ import annotations

import pytest
import torch

from setr.data.synthetic import SYNTHETIC_CLASSES, SyntheticShapes, synthetic_info


def test_samples_depend_only_on_seed_split_and_index():
    first = SyntheticShapes(10, size=64, seed=3)
    second = SyntheticShapes(10, size=64, seed=3)
    for index in (7, 0, 4):  # any order
        image_a, label_a = first[index]
        image_b, label_b = second[index]
        assert torch.equal(image_a, image_b) and torch.equal(label_a, label_b)
    assert not torch.equal(first[0][0], first[1][0])
    assert not torch.equal(first[0][0], SyntheticShapes(10, size=64, seed=4)[0][0])
    assert not torch.equal(first[0][0], SyntheticShapes(10, size=64, seed=3, split="val")[0][0])


def test_shapes_types_and_class_coverage():
    data = SyntheticShapes(24, size=(64, 96), num_classes=7)
    seen = set()
    for index in range(len(data)):
        image, label = data[index]
        assert image.shape == (3, 64, 96) and image.dtype == torch.uint8
        assert label.shape == (64, 96) and label.dtype == torch.int64
        assert 0 <= int(label.min()) and int(label.max()) < 7
        seen |= set(label.unique().tolist())
    assert seen == set(range(7))
    assert data.info.class_names == SYNTHETIC_CLASSES
    assert synthetic_info(3).num_classes == 3


def _interior(label: torch.Tensor, cls: int) -> torch.Tensor:
    """Pixels of class ``cls`` whose right and lower neighbours are of the same class (no edges)."""
    core = label[:-1, :-1] == cls
    return core & (label[1:, :-1] == cls) & (label[:-1, 1:] == cls)


def test_labels_follow_the_drawing():
    """Without pixel noise, flat shape classes are smooth inside and textures are not."""
    data = SyntheticShapes(30, size=96, num_classes=5, noise=0.0)
    flat, textured = [], []
    for index in range(len(data)):
        image, label = data[index]
        image = image.float()
        step = (image[:, 1:, :-1] - image[:, :-1, :-1]).abs().amax(0) + (
            image[:, :-1, 1:] - image[:, :-1, :-1]
        ).abs().amax(0)
        flat.append(step[_interior(label, SYNTHETIC_CLASSES.index("ring"))])
        textured.append(step[_interior(label, SYNTHETIC_CLASSES.index("checks"))])
    flat, textured = torch.cat(flat), torch.cat(textured)
    assert flat.numel() > 500 and textured.numel() > 500
    # ring pixels only see the gentle global shading; checks alternate colours every 3-6 px
    assert flat.mean() < 3 and (flat > 30).float().mean() < 0.02
    assert textured.mean() > 20


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticShapes(num_classes=8)
    with pytest.raises(ValueError, match="split"):
        SyntheticShapes(split="training")
    with pytest.raises(ValueError, match="too small"):
        SyntheticShapes(size=16)
    with pytest.raises(IndexError):
        SyntheticShapes(3)[3]
