"""The official augmentation: labels stay aligned with images, padding, the crop rule, mmseg semantics."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from setr.data.transforms import (
    PadTo,
    PhotoMetricDistortion,
    RandomCropCatMax,
    RandomResize,
    _hsv_to_rgb,
    _rgb_to_hsv,
    apply_transform,
    eval_transform,
    train_transform,
)

# One distinct grey level per class, far apart, so a pixel's class can be read back from its colour.
LEVELS = torch.tensor([0, 60, 120, 180, 240])


def _blocky_pair(height: int = 90, width: int = 130) -> tuple[torch.Tensor, torch.Tensor]:
    """An asymmetric label of large blocks and an image that paints each class its own grey."""
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    label = ((xs // 23) + 2 * (ys // 17)) % 5
    label[: height // 3, : width // 4] = 4  # breaks the left-right symmetry
    image = LEVELS[label].to(torch.uint8).expand(3, height, width).clone()
    return image, label


def _uniform_neighbourhood(label: torch.Tensor) -> torch.Tensor:
    """Pixels whose 3x3 neighbourhood holds a single label."""
    padded = torch.nn.functional.pad(label[None, None].float(), (1, 1, 1, 1), mode="replicate")
    patches = torch.nn.functional.unfold(padded, 3).view(9, *label.shape)
    return (patches == label.float()).all(0)


def _read_back(image: torch.Tensor) -> torch.Tensor:
    return (image[0, :, :, None].float() - LEVELS.float()).abs().argmin(-1)


@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_geometric_steps_keep_image_and_label_aligned(flip):
    image, label = _blocky_pair()
    geometric = v2.Compose(
        [RandomResize((130, 90), (0.5, 2.0)), RandomCropCatMax(64), v2.RandomHorizontalFlip(flip), PadTo(64, 0, 255)]
    )
    for seed in range(6):
        out_image, out_label = apply_transform(geometric, image, label, seed=seed)
        assert out_image.shape == (3, 64, 64) and out_label.shape == (64, 64)
        # away from class edges (where bilinear interpolation blends greys) the pixels agree; nearest
        # (label) and bilinear (image) sampling positions differ by up to half a source pixel
        inside = _uniform_neighbourhood(out_label) & (out_label != 255)
        assert inside.sum() > 1000
        agree = (_read_back(out_image)[inside] == out_label[inside]).float().mean()
        assert agree > 0.99, f"seed {seed}: only {agree:.2%} of pixels agree"


def test_full_pipeline_shapes_padding_and_normalisation():
    image, label = _blocky_pair(40, 50)  # at ratio <= 1 smaller than the crop: padded
    transform = train_transform(crop_size=96, scale=(50, 40), ratio_range=(0.5, 1.0), photometric=False)
    out_image, out_label = apply_transform(transform, image, label, seed=0)
    assert out_image.shape == (3, 96, 96) and out_image.dtype == torch.float32
    assert out_label.shape == (96, 96) and out_label.dtype == torch.int64
    assert (out_label[-40:, :] == 255).all() and (out_label[:, -40:] == 255).all()
    assert (out_image[:, -40:, :] == 0).all()  # image padding is 0 after normalisation
    # class 0 (grey 0) normalises to -mean/std
    inside = (out_label == 0) & _uniform_neighbourhood(out_label)
    expected = -torch.tensor([123.675, 116.28, 103.53]) / torch.tensor([58.395, 57.12, 57.375])
    assert torch.allclose(out_image[:, inside].mean(1), expected, atol=0.02)


def test_random_resize_keeps_the_aspect_ratio_within_the_scale():
    image = tv_tensors.Image(torch.zeros(3, 100, 200, dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.zeros(100, 200, dtype=torch.int64))
    out_image, out_mask = RandomResize((2048, 512), None)(image, mask)
    assert out_image.shape[-2:] == (512, 1024) == out_mask.shape[-2:]  # factor min(2048/200, 512/100)
    out_image, _ = RandomResize((400, 100), (0.5, 0.5))(image, mask)  # target (200, 50)
    assert out_image.shape[-2:] == (50, 100)


def test_cat_max_ratio_acceptance_rule():
    crop = RandomCropCatMax(4, cat_max_ratio=0.75)
    assert not crop.accepts(torch.zeros(4, 4, dtype=torch.int64))  # one class
    eighty = torch.tensor([0] * 13 + [1] * 3).view(4, 4)
    assert not crop.accepts(eighty)  # 81% > 75%
    seventy = torch.tensor([0] * 11 + [1] * 5).view(4, 4)
    assert crop.accepts(seventy)  # 69%
    ignored = torch.tensor([0] * 11 + [255] * 5).view(4, 4)
    assert not crop.accepts(ignored)  # ignore does not count as a class


def test_cat_max_ratio_redraws_crops_dominated_by_one_class():
    label = torch.zeros(100, 100, dtype=torch.int64)
    label[:60, :60] = 1
    image = torch.zeros(3, 100, 100, dtype=torch.uint8)

    def accepted(ratio: float) -> int:
        crop = RandomCropCatMax(40, cat_max_ratio=ratio)
        return sum(
            RandomCropCatMax(40).accepts(apply_transform(crop, image, label, seed=seed)[1]) for seed in range(30)
        )

    # a third of the draws are acceptable: 11 draws find one 99% of the time, a single draw rarely
    assert accepted(0.75) >= 27
    assert accepted(1.0) <= 18


def test_photometric_distortion_follows_mmseg_and_leaves_labels_alone():
    pmd = PhotoMetricDistortion()
    image = tv_tensors.Image(torch.tensor([0, 100, 250], dtype=torch.uint8).view(3, 1, 1).expand(3, 2, 2).clone())
    label = tv_tensors.Mask(torch.ones(2, 2, dtype=torch.int64))
    none = dict(brightness=None, contrast_first=True, contrast=None, saturation=None, hue=None)
    out = pmd.transform(image, dict(none, brightness=10.7))
    assert out[:, 0, 0].tolist() == [10, 110, 255]  # added, clipped, truncated
    out = pmd.transform(image, dict(none, contrast=0.5))
    assert out[:, 0, 0].tolist() == [0, 50, 125]  # multiplied, not blended with a mean
    assert pmd.transform(label, dict(none, brightness=10.0)) is label
    torch.manual_seed(0)
    distorted, kept = pmd(image, label)
    assert distorted.dtype == torch.uint8 and torch.equal(kept, label)


def test_hsv_round_trip_and_hue_shift():
    rgb = torch.randint(0, 256, (3, 16, 16)).float()
    back = _hsv_to_rgb(_rgb_to_hsv(rgb))
    assert (back - rgb).abs().max() <= 5  # hue quantised to 2 degrees: up to 255/60 levels
    red = torch.tensor([255.0, 0.0, 0.0]).view(3, 1, 1)
    hsv = _rgb_to_hsv(red)
    assert hsv[:, 0, 0].tolist() == [0, 255, 255]
    hsv[0] = (hsv[0] + 60) % 180  # +120 degrees: red -> green
    assert _hsv_to_rgb(hsv)[:, 0, 0].tolist() == [0, 255, 0]


def test_seeded_application_is_reproducible_and_isolated():
    image, label = _blocky_pair()
    transform = train_transform(64, (130, 90))
    state = torch.get_rng_state()
    first = apply_transform(transform, image, label, seed=5)
    second = apply_transform(transform, image, label, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    third = apply_transform(transform, image, label, seed=6)
    assert not torch.equal(first[0], third[0])


def test_eval_transform_resizes_only_the_image():
    image, label = _blocky_pair(50, 100)
    out_image, out_label = apply_transform(eval_transform((200, 100)), image, label)
    assert out_image.shape == (3, 100, 200) and torch.equal(out_label, label)


def test_mismatched_pair_is_rejected():
    with pytest.raises(ValueError, match="same size"):
        apply_transform(train_transform(32, (64, 64)), torch.zeros(3, 10, 10, dtype=torch.uint8), torch.zeros(9, 10))
