"""The official augmentation: labels stay aligned with images, padding, the crop rule, mmseg semantics.

The second half holds every stage, and the whole pipeline, to a reference written here with numpy
and OpenCV in mmseg 0.x's order (BGR images as ``mmcv.imread`` gives them, ``imrescale``,
``RandomCrop`` with ``cat_max_ratio``, ``imflip``, ``PhotoMetricDistortion``, ``imnormalize``,
``impad``), on the same random draws.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from setr.data.resize import resize_bilinear_uint8, resize_nearest
from setr.data.transforms import (
    PadTo,
    PhotoMetricDistortion,
    RandomCropCatMax,
    RandomResize,
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


# ----------------------------------------------------------- the official kernels, stage by stage
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


def _noise(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _cv2_linear(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``cv2.resize(INTER_LINEAR)`` of a ``(C, H, W)`` uint8 image as mmcv resizes its ``(H, W, C)`` array."""
    hwc = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
    out = cv2.resize(hwc, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(out.reshape(*size, image.shape[0])).permute(2, 0, 1)


IMAGE_SIZES = [
    ((90, 130), (45, 65)), ((90, 130), (180, 260)), ((64, 64), (32, 32)), ((37, 101), (74, 202)),
    ((31, 17), (15, 8)), ((100, 37), (137, 51)), ((512, 1024), (385, 770)), ((7, 5), (3, 2)), ((1, 1), (4, 6)),
]  # fmt: skip


@pytest.mark.parametrize(("source", "target"), IMAGE_SIZES)
def test_image_resize_is_opencv_inter_linear_byte_for_byte(source, target):
    image = _noise((3, *source), seed=source[0] + target[1])
    resized = RandomResize((1, 1)).transform(tv_tensors.Image(image), {"size": list(target)})
    assert isinstance(resized, tv_tensors.Image) and resized.dtype == torch.uint8
    assert torch.equal(resized.as_subclass(torch.Tensor), _cv2_linear(image, target))
    batch = torch.stack([image, image.flip(-1)])  # (B, C, H, W) and (C, H, W) resize alike
    assert torch.equal(resize_bilinear_uint8(batch, target)[1], _cv2_linear(image.flip(-1), target))


def test_image_resize_accepts_only_uint8():
    with pytest.raises(TypeError, match="uint8"):
        RandomResize((1, 1)).transform(tv_tensors.Image(torch.zeros(3, 4, 4)), {"size": [2, 2]})


# (H, W) -> (new H, new W); on the first two torch's nearest (and so torchvision's mask resize) reads
# a neighbouring row or column: 39 -> 15 rows, 14 -> 36 and 56 -> 50 columns
LABEL_SIZES = [
    ((39, 14), (15, 36)), ((26, 56), (22, 50)), ((90, 130), (45, 65)), ((90, 130), (181, 261)),
    ((1, 1), (3, 5)), ((7, 5), (14, 10)), ((64, 64), (32, 32)), ((129, 23), (13, 91)), ((512, 1024), (385, 770)),
]  # fmt: skip


def test_label_resize_is_opencv_inter_nearest():
    torch_differs = 0
    for (h, w), (new_h, new_w) in LABEL_SIZES:
        label = torch.from_numpy(np.random.default_rng(h * 1000 + w).integers(0, 19, (h, w)))  # int64, as datasets give
        ours = RandomResize((1, 1)).transform(tv_tensors.Mask(label), {"size": [new_h, new_w]})
        official = cv2.resize(label.numpy().astype(np.uint8), (new_w, new_h), interpolation=cv2.INTER_NEAREST)
        assert isinstance(ours, tv_tensors.Mask) and ours.dtype == torch.int64
        assert torch.equal(ours.as_subclass(torch.Tensor), torch.from_numpy(official).long()), (h, w, new_h, new_w)
        nearest = torch.nn.functional.interpolate(label[None, None].float(), size=(new_h, new_w), mode="nearest")
        torch_differs += not torch.equal(nearest[0, 0].long(), ours.as_subclass(torch.Tensor))
    assert torch_differs >= 2  # what the comparison with OpenCV catches
    wide = torch.tensor([[-(2**31), 2**31 - 1], [7, 0]], dtype=torch.int64)  # int32's range, any dtype
    assert torch.equal(resize_nearest(wide, (4, 4)), wide.repeat_interleave(2, 0).repeat_interleave(2, 1))
    assert torch.equal(resize_nearest(wide > 0, (4, 4)), resize_nearest(wide, (4, 4)) > 0)
    with pytest.raises(ValueError, match="int32"):
        resize_nearest(wide * 2, (4, 4))


def test_rgb_hsv_equals_mmcv_bgr_hsv_on_every_colour():
    """mmcv converts BGR images; on the same pixels OpenCV's RGB<->HSV gives the same HSV and colours."""
    cube = np.arange(2**24, dtype=np.uint32)
    rgb = np.stack([cube >> 16, (cube >> 8) & 255, cube & 255], -1).astype(np.uint8).reshape(4096, 4096, 3)
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    assert np.array_equal(hsv, cv2.cvtColor(np.ascontiguousarray(rgb[..., ::-1]), cv2.COLOR_BGR2HSV))
    del rgb, cube
    hsv[..., 0] %= 180  # every hue the 8-bit conversion makes, with every S and V
    assert np.array_equal(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[..., ::-1])


def _mm_convert(img: np.ndarray, alpha: float = 1, beta: float = 0) -> np.ndarray:
    """mmseg 0.x ``PhotoMetricDistortion.convert``."""
    img = img.astype(np.float32) * alpha + beta
    img = np.clip(img, 0, 255)
    return img.astype(np.uint8)


def _mm_photometric(bgr: np.ndarray, draws: dict) -> np.ndarray:
    """mmseg 0.x ``PhotoMetricDistortion.__call__`` on a BGR uint8 image, its random draws given."""
    img = bgr
    if draws["brightness"] is not None:
        img = _mm_convert(img, beta=draws["brightness"])
    mode = 1 if draws["contrast_first"] else 0  # mode 1: contrast before the HSV steps
    if mode == 1 and draws["contrast"] is not None:
        img = _mm_convert(img, alpha=draws["contrast"])
    if draws["saturation"] is not None:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)  # mmcv.bgr2hsv
        img[:, :, 1] = _mm_convert(img[:, :, 1], alpha=draws["saturation"])
        img = cv2.cvtColor(img, cv2.COLOR_HSV2BGR)
    if draws["hue"] is not None:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        img[:, :, 0] = (img[:, :, 0].astype(int) + draws["hue"]) % 180
        img = cv2.cvtColor(img, cv2.COLOR_HSV2BGR)
    if mode == 0 and draws["contrast"] is not None:
        img = _mm_convert(img, alpha=draws["contrast"])
    return img


_OFF = dict(brightness=None, contrast_first=True, contrast=None, saturation=None, hue=None)
DISTORTIONS = [
    _OFF,
    dict(_OFF, brightness=-25.61),
    dict(_OFF, contrast=1.3127),
    dict(_OFF, saturation=0.6233),
    dict(_OFF, saturation=1.4999),
    dict(_OFF, hue=-18),
    dict(_OFF, hue=17),
    dict(brightness=17.3, contrast_first=True, contrast=1.31, saturation=0.62, hue=-7),
    dict(brightness=-31.9, contrast_first=False, contrast=0.507, saturation=1.44, hue=13),
    dict(brightness=31.99, contrast_first=False, contrast=1.5, saturation=None, hue=-1),
]


@pytest.mark.parametrize("draws", DISTORTIONS)
def test_photometric_steps_equal_mmseg_on_the_same_draws(draws):
    image = _noise((3, 61, 47), seed=3)
    image[:, :20] = image[:, :20] // 4 * 4  # some greys and darker colours besides the noise
    image[:, :5] = image[0, :5]
    ours = PhotoMetricDistortion().transform(tv_tensors.Image(image), draws).as_subclass(torch.Tensor)
    bgr = np.ascontiguousarray(image.permute(1, 2, 0).numpy()[..., ::-1])
    official = _mm_photometric(bgr, draws)[..., ::-1]
    assert ours.dtype == torch.uint8 and torch.equal(ours, torch.from_numpy(official.copy()).permute(2, 0, 1))
    batch = PhotoMetricDistortion().transform(tv_tensors.Image(torch.stack([image, image])), draws)
    assert torch.equal(batch[1].as_subclass(torch.Tensor), ours)


def _mm_pipeline(
    rgb: np.ndarray,
    label: np.ndarray,
    ratio: float,
    offsets: Iterator[tuple[int, int]],
    flip: bool,
    draws: dict,
    crop: int,
    img_scale: tuple[int, int],
    cat_max_ratio: float = 0.75,
    ignore_index: int = 255,
) -> tuple[np.ndarray, np.ndarray]:
    """mmseg 0.x's train pipeline on one ``(H, W, 3)`` RGB image and ``(H, W)`` uint8 label, the random
    draws given (``offsets`` yields the crop offsets ``np.random.randint`` would)."""
    img = np.ascontiguousarray(rgb[..., ::-1])  # LoadImageFromFile: BGR
    # Resize(img_scale, ratio_range, keep_ratio=True): random_sample_ratio, then mmcv.imrescale
    scale = int(img_scale[0] * ratio), int(img_scale[1] * ratio)
    h, w = img.shape[:2]
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    new_w, new_h = int(w * float(factor) + 0.5), int(h * float(factor) + 0.5)
    img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    seg = cv2.resize(label, (new_w, new_h), interpolation=cv2.INTER_NEAREST)

    # RandomCrop(crop, cat_max_ratio)
    def crop_bbox() -> tuple[int, int, int, int]:
        offset_h, offset_w = next(offsets)
        assert 0 <= offset_h <= max(new_h - crop, 0) and 0 <= offset_w <= max(new_w - crop, 0)
        return offset_h, offset_h + crop, offset_w, offset_w + crop

    box = crop_bbox()
    for _ in range(10):
        labels, cnt = np.unique(seg[box[0] : box[1], box[2] : box[3]], return_counts=True)
        cnt = cnt[labels != ignore_index]
        if len(cnt) > 1 and np.max(cnt) / np.sum(cnt) < cat_max_ratio:
            break
        box = crop_bbox()
    img, seg = img[box[0] : box[1], box[2] : box[3]], seg[box[0] : box[1], box[2] : box[3]]
    if flip:  # RandomFlip: mmcv.imflip, horizontal
        img, seg = np.flip(img, axis=1), np.flip(seg, axis=1)
    img = _mm_photometric(np.ascontiguousarray(img), draws)
    # Normalize(mean, std, to_rgb=True): mmcv.imnormalize
    img = img.copy().astype(np.float32)
    mean, stdinv = np.float64(np.array(MEAN).reshape(1, -1)), 1 / np.float64(np.array(STD).reshape(1, -1))
    cv2.cvtColor(img, cv2.COLOR_BGR2RGB, img)
    cv2.subtract(img, mean, img)
    cv2.multiply(img, stdinv, img)
    # Pad(size=crop, pad_val=0, seg_pad_val=255): mmcv.impad at the bottom and right
    pad = ((0, crop - img.shape[0]), (0, crop - img.shape[1]))
    img = np.pad(img, (*pad, (0, 0)), constant_values=0)
    seg = np.pad(seg, pad, constant_values=255)
    return img.transpose(2, 0, 1), seg  # DefaultFormatBundle: (C, H, W)


def _scene(height: int, width: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise over blocks of classes, one of them large, so that the crop rule has to redraw."""
    image, label = _blocky_pair(height, width)
    label[: height // 2, : width // 2] = 1
    image = (image.int() // 2 + _noise((3, height, width), seed).int() // 2).to(torch.uint8)
    return image, label


PIPELINE_CASES = [
    (0.5, False, DISTORTIONS[7]),  # resized below the crop: padded
    (0.77, True, DISTORTIONS[8]),
    (1.0, False, DISTORTIONS[0]),
    (1.37, True, DISTORTIONS[9]),
    (2.0, True, DISTORTIONS[7]),
    (1.61, False, DISTORTIONS[8]),
]


@pytest.mark.parametrize(("ratio", "flip", "draws"), PIPELINE_CASES)
def test_train_pipeline_equals_mmseg_on_the_same_draws(ratio, flip, draws, monkeypatch):
    image, label = _scene(90, 130, seed=int(ratio * 100))
    offsets: list[tuple[int, int]] = []
    draw = RandomCropCatMax._draw
    monkeypatch.setattr(RandomCropCatMax, "_draw", lambda self, h, w: offsets.append(draw(self, h, w)) or offsets[-1])
    monkeypatch.setattr(PhotoMetricDistortion, "make_params", lambda self, flat_inputs: draws)
    # a one-point ratio range and a certain or impossible flip force those draws
    transform = train_transform(64, (130, 90), ratio_range=(ratio, ratio), flip_prob=float(flip))
    for seed in range(4):
        offsets.clear()
        ours_image, ours_label = apply_transform(transform, image, label, seed=seed)
        replay = iter(offsets)
        rgb = image.permute(1, 2, 0).numpy()
        official_image, official_label = _mm_pipeline(
            rgb, label.numpy().astype(np.uint8), ratio, replay, flip, draws, crop=64, img_scale=(130, 90)
        )
        assert next(replay, None) is None  # the same number of crop redraws
        assert ours_image.shape == official_image.shape and ours_label.shape == official_label.shape
        assert (ours_image - torch.from_numpy(official_image)).abs().max() <= 1e-5
        assert torch.equal(ours_label, torch.from_numpy(official_label.astype(np.int64)))
    assert len(offsets) >= 1


def test_augmentation_is_deterministic_across_runs_and_thread_counts():
    image, label = _scene(512, 1024, seed=0)
    transform = train_transform(256, (1024, 512))
    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    try:
        runs = []
        for torch_threads, opencv_threads in [(1, 1), (2, cv_threads), (2, cv_threads)]:
            torch.set_num_threads(torch_threads)
            cv2.setNumThreads(opencv_threads)
            runs.append([apply_transform(transform, image, label, seed=seed) for seed in (0, 1, 2)])
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)
    for run in runs[1:]:
        for (first_image, first_label), (image_again, label_again) in zip(runs[0], run):
            assert torch.equal(first_image, image_again) and torch.equal(first_label, label_again)
