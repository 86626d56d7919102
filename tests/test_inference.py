"""Inference: window placement, sliding-window numbers, test resizes, ms+flip, preprocessing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import setr
from setr.data.meta import DATASETS
from setr.inference import (
    Predictor,
    multi_scale_sizes,
    normalize,
    predict,
    preprocess,
    resize_image,
    resolve_protocol,
    single_scale_size,
    slide_inference,
    to_rgb_tensor,
    whole_inference,
    window_boxes,
)

from .conftest import HEADS, small
from .test_golden import golden_model

TINY = small(depth=2)
TAPS = {"naive": dict(decode_index=1, aux_indices=[]), "pup": dict(decode_index=1, aux_indices=[]),
        "mla": dict(mla_indices=[0, 0, 1, 1], aux_indices=[])}  # fmt: skip


def tiny_model(head: str = "pup", dataset: str = "cityscapes") -> setr.SETR:
    torch.manual_seed(0)
    return setr.create_model(f"setr_{head}_vitl_{dataset}", **TINY, **TAPS[head]).eval()


def rgb(height: int, width: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, height, width), generator=generator, dtype=torch.uint8)


def cv2_resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The official pipeline's resize (``mmcv.imrescale``): OpenCV bilinear on the uint8 ``(C, H, W)`` image."""
    array = image.to(torch.uint8).permute(1, 2, 0).numpy()
    out = cv2.resize(array, (size[1], size[0]), interpolation=cv2.INTER_LINEAR).reshape(size[0], size[1], -1)
    return torch.from_numpy(out).permute(2, 0, 1).float()


# ------------------------------------------------------------------------------ test resize
RESIZE_SWEEP = [
    ((1, 1), (3, 5)), ((2, 3), (1, 1)), ((7, 5), (14, 10)), ((31, 17), (15, 8)), ((64, 64), (32, 32)),
    ((100, 37), (137, 51)), ((97, 211), (33, 71)), ((40, 72), (61, 110)), ((128, 256), (1025 // 8, 2049 // 8)),
    ((512, 683), (171, 227)), ((20, 30), (61, 91)), ((33, 33), (32, 34)),
]  # fmt: skip


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize(("source", "target"), RESIZE_SWEEP)
def test_8bit_resize_equals_opencv_byte_for_byte(source, target, channels):
    generator = torch.Generator().manual_seed(source[0] * 1000 + target[1] + channels)
    image = torch.randint(0, 256, (2, channels, *source), generator=generator, dtype=torch.uint8)
    ours = resize_image(image.float(), target)
    assert ours.dtype == torch.float32 and ours.shape == (2, channels, *target)
    for one, resized in zip(image, ours):
        assert torch.equal(resized, cv2_resize(one, target))
    assert torch.equal(resize_image(image, target), ours)  # uint8 tensors too


def test_8bit_resize_equals_opencv_on_random_sizes_and_scales():
    rng = np.random.default_rng(16)
    for _ in range(60):
        source = tuple(int(v) for v in rng.integers(1, 90, 2))
        factor = rng.choice([0.25, 0.5, 0.33, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, rng.uniform(0.2, 3.0)])
        target = tuple(max(1, int(v * factor + 0.5)) for v in source)
        channels = int(rng.integers(1, 5))
        image = torch.from_numpy(rng.integers(0, 256, (1, channels, *source), dtype=np.uint8))
        assert torch.equal(resize_image(image, target)[0], cv2_resize(image[0], target)), (source, target, channels)


def test_the_8bit_resize_is_not_float_bilinear_rounded():
    """What the official pipeline's fixed-point arithmetic changes, i.e. what the sweep can catch."""
    image = rgb(256, 512).float()[None]
    ours = resize_image(image, (307, 615))
    rounded = F.interpolate(image, size=(307, 615), mode="bilinear", align_corners=False).round()
    differs = (ours != rounded).float().mean().item()
    assert 0.01 < differs and (ours - rounded).abs().max() == 1  # one grey level on a share of values


def test_float_images_keep_the_float_path_unrounded():
    image = torch.rand(1, 3, 20, 30, generator=torch.Generator().manual_seed(0)) * 255  # fractions: not 8-bit
    expected = F.interpolate(image, size=(41, 61), mode="bilinear", align_corners=False)
    assert torch.equal(resize_image(image, (41, 61)), expected)
    eight_bit = image.round()
    assert not torch.equal(resize_image(eight_bit, (41, 61)), F.interpolate(eight_bit, size=(41, 61), mode="bilinear"))
    assert torch.equal(
        resize_image(eight_bit, (41, 61), quantize=False), F.interpolate(eight_bit, size=(41, 61), mode="bilinear")
    )
    assert resize_image(image, (20, 30)) is image
    assert resize_image(torch.empty(0, 3, 20, 30), (10, 15)).shape == (0, 3, 10, 15)


# ------------------------------------------------------------------------------ windows
def test_window_boxes_follow_the_official_grid():
    boxes = window_boxes(96, 160, crop=64, stride=43)
    # h_grids = (96 - 64 + 42) // 43 + 1 = 2, w_grids = (160 - 64 + 42) // 43 + 1 = 4; last ones shifted back.
    ys = sorted({(y1, y2) for y1, y2, _, _ in boxes})
    xs = sorted({(x1, x2) for _, _, x1, x2 in boxes})
    assert ys == [(0, 64), (32, 96)]
    assert xs == [(0, 64), (43, 107), (86, 150), (96, 160)]
    assert len(boxes) == 8 and boxes[0] == (0, 64, 0, 64) and boxes[-1] == (32, 96, 96, 160)
    assert window_boxes(64, 64, 64, 43) == [(0, 64, 0, 64)]
    with pytest.raises(ValueError, match="stride"):
        window_boxes(64, 64, 32, 40)


@pytest.mark.parametrize("head", HEADS)
def test_slide_reproduces_the_official_slide_logits(head):
    model, golden = golden_model(head)
    with torch.no_grad():
        for batch_size in (1, 3):
            logits = slide_inference(model, golden["slide.input"], crop=64, stride=43, batch_size=batch_size)
            assert logits.shape == golden["slide.logits"].shape
            torch.testing.assert_close(logits, golden["slide.logits"], atol=1e-5, rtol=0)


def test_slide_without_overlap_is_the_network_on_each_window():
    model = tiny_model()
    x = normalize(rgb(64, 96).float())[None]
    with torch.no_grad():
        logits = slide_inference(model, x, crop=32, stride=32, batch_size=4)
        for y in (0, 32):
            for x0 in (0, 32, 64):
                window = model(x[..., y : y + 32, x0 : x0 + 32])
                torch.testing.assert_close(logits[..., y : y + 32, x0 : x0 + 32], window, atol=1e-5, rtol=0)


def test_batched_windows_equal_one_by_one():
    model = tiny_model("mla")
    x = normalize(torch.stack([rgb(50, 75, 1), rgb(50, 75, 2)]).float())
    with torch.no_grad():
        one = slide_inference(model, x, crop=32, stride=21, batch_size=1)
        many = slide_inference(model, x, crop=32, stride=21, batch_size=7)
        separate = torch.cat([slide_inference(model, x[i : i + 1], 32, 21, 1) for i in range(2)])
    torch.testing.assert_close(one, many, atol=1e-5, rtol=0)
    torch.testing.assert_close(one, separate, atol=1e-5, rtol=0)


def test_images_smaller_than_the_crop_are_padded_not_rejected():
    model = tiny_model("naive")
    x = normalize(rgb(20, 40).float())[None]
    with torch.no_grad():
        logits = slide_inference(model, x, crop=32, stride=21)
        padded = F.pad(x, (0, 0, 0, 12))  # to 32 x 40: windows at x = 0 and x = 8
        left, right = model(padded[..., 0:32]), model(padded[..., 8:40])
    expected = torch.zeros(1, 19, 32, 40)
    expected[..., 0:32] += left
    expected[..., 8:40] += right
    expected[..., 8:32] /= 2
    assert logits.shape == (1, 19, 20, 40)
    torch.testing.assert_close(logits, expected[..., :20, :], atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------ protocol
def test_test_time_sizes_match_the_official_pipelines():
    city, ade, pctx = (DATASETS[n].protocol for n in ("cityscapes", "ade20k", "pcontext"))
    assert single_scale_size(1024, 2048, city) == (1025, 2049)
    assert single_scale_size(512, 683, ade) == (512, 683) and single_scale_size(256, 341, ade) == (512, 682)
    assert single_scale_size(375, 500, pctx) == (520, 693)
    # official_setr.md section 8: the short sides of the multi-scale views.
    assert [min(s) for s in multi_scale_sizes(1024, 2048, city)] == [768, 768, 1025, 1281, 1537, 1793]
    assert [min(s) for s in multi_scale_sizes(512, 683, ade)] == [512, 512, 512, 640, 768, 896]
    assert [min(s) for s in multi_scale_sizes(375, 500, pctx)] == [480, 480, 520, 650, 780, 910]
    assert multi_scale_sizes(400, 300, ade)[3] == (853, 640)  # portrait: the width is the short side


def test_zoo_protocol_is_the_default_and_can_be_overridden():
    protocol = Predictor(tiny_model("pup", "ade20k")).protocol
    assert (protocol.mode, protocol.crop, protocol.stride, protocol.test_scale) == ("slide", 512, 341, (2048, 512))
    assert len(protocol.ms_ratios) == 6
    naive_ade = setr.create_model("setr_naive_vitl_ade20k", **TINY, **TAPS["naive"])
    assert resolve_protocol(naive_ade).ms_ratios == (0.5, 0.75, 1.0)  # the official Naive/MLA ADE ms configs
    bare = setr.create_model("setr_pup_vitl", **TINY, **TAPS["pup"])
    assert resolve_protocol(bare) == setr.EvalProtocol(mode="slide", crop=32, stride=21, test_scale=None)
    assert resolve_protocol(bare, mode="whole", ms_ratios=[1.0]).ms_ratios == (1.0,)
    with pytest.raises(TypeError, match="unknown protocol fields"):
        resolve_protocol(bare, window=3)
    with pytest.raises(ValueError, match="mode"):
        resolve_protocol(bare, mode="tiles")


def test_single_scale_resizes_for_the_network_and_back():
    model = tiny_model()
    image = rgb(30, 50)
    predictor = Predictor(model, crop=32, stride=21, test_scale=(100, 40))  # -> 40 x 67
    seg = predictor(image, return_probs=True)
    resized = cv2_resize(image, (40, 67))[None]
    with torch.no_grad():
        logits = slide_inference(model, normalize(resized), 32, 21)
    expected = F.interpolate(logits, size=(30, 50), mode="bilinear", align_corners=False)[0]
    assert seg.mask.shape == (30, 50) and seg.probs.shape == (19, 30, 50)
    torch.testing.assert_close(seg.probs, expected.softmax(0), atol=1e-5, rtol=0)
    assert torch.equal(seg.mask, seg.probs.argmax(0))


def test_ms_flip_with_one_unit_ratio_and_no_flip_is_slide_softmax():
    model = tiny_model("naive")
    image = rgb(40, 72)
    predictor = Predictor(model, crop=32, stride=21, test_scale=None, ms_ratios=[1.0], flip=False)
    seg = predictor(image, ms_flip=True, return_probs=True)
    with torch.no_grad():
        expected = slide_inference(model, normalize(image[None].float()), 32, 21).softmax(1)[0]
    torch.testing.assert_close(seg.probs, expected, atol=1e-6, rtol=0)


def test_ms_flip_averages_probabilities_over_scales_and_flips():
    model = tiny_model("mla")
    image = rgb(32, 48)
    predictor = Predictor(model, crop=32, stride=21, test_scale=None, ms_ratios=[1.0, 1.5])
    probs = predictor(image, ms_flip=True, return_probs=True).probs

    def view(x: torch.Tensor) -> torch.Tensor:
        logits = slide_inference(model, normalize(x[None]), 32, 21)
        return F.interpolate(logits, size=(32, 48), mode="bilinear", align_corners=False).softmax(1)[0]

    with torch.no_grad():  # the official order: OpenCV resize of the uint8 image, then the flip
        same, larger = image.float(), cv2_resize(image, (48, 72))
        views = [view(same), view(same.flip(-1)).flip(-1), view(larger), view(larger.flip(-1)).flip(-1)]
    torch.testing.assert_close(probs, torch.stack(views).mean(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(probs.sum(0), torch.ones(32, 48), atol=1e-5, rtol=0)


def test_whole_mode_runs_the_network_once_per_image():
    model = tiny_model()
    images = torch.stack([rgb(24, 40, 1), rgb(24, 40, 2), rgb(24, 40, 3)])
    seg = predict(model, images, mode="whole", test_scale=None, batch_size=2, return_probs=True)
    with torch.no_grad():
        expected = whole_inference(model, normalize(images.float()), batch_size=3).softmax(1)
    assert isinstance(seg, list) and len(seg) == 3
    torch.testing.assert_close(torch.stack([s.probs for s in seg]), expected, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------ inputs
def test_every_input_form_gives_the_same_pixels(tmp_path):
    image = rgb(20, 30)
    hwc = image.permute(1, 2, 0).numpy()
    path = tmp_path / "x.png"
    Image.fromarray(hwc).save(path)
    forms = [image, image.float(), hwc, hwc.astype(np.float32), Image.fromarray(hwc), str(path), path]
    for form in forms:
        torch.testing.assert_close(to_rgb_tensor(form), image.float(), atol=0, rtol=0)
    grey = to_rgb_tensor(hwc[:, :, 0])
    assert grey.shape == (3, 20, 30) and torch.equal(grey[0], grey[2])
    batch = preprocess(np.stack([hwc, hwc]))
    assert batch.shape == (2, 3, 20, 30)
    expected = (image.float()[0] - 123.675) / 58.395
    torch.testing.assert_close(batch[1, 0], expected)
    with pytest.raises(ValueError, match="channels-last"):
        to_rgb_tensor(torch.zeros(20, 30, 3))
    with pytest.raises(TypeError, match="unsupported image type"):
        to_rgb_tensor(3.5)
    with pytest.raises(ValueError, match="different sizes"):
        preprocess([hwc, hwc[:10]])


def test_batches_of_mixed_sizes_equal_single_calls():
    model = tiny_model()
    predictor = Predictor(model, crop=32, stride=21, test_scale=None, batch_size=3)
    images = [rgb(20, 30, 1), rgb(40, 33, 2), rgb(40, 33, 3), rgb(20, 30, 4)]
    together = predictor(images, return_probs=True)
    assert [tuple(s.mask.shape) for s in together] == [(20, 30), (40, 33), (40, 33), (20, 30)]
    for image, seg in zip(images, together):
        alone = predictor(image, return_probs=True)
        torch.testing.assert_close(seg.probs, alone.probs, atol=1e-5, rtol=0)
    single = predictor(images[0])
    assert isinstance(single, setr.inference.Segmentation) and single.probs is None
    assert single.mask.dtype == torch.int64


@pytest.mark.parametrize("classes, size", [(150, (77, 101)), (19, (64, 48)), (5, (40, 40))])
def test_resized_argmax_equals_the_argmax_of_the_resized_logits(classes, size):
    from setr.inference.resize import resize_logits, resized_argmax

    generator = torch.Generator().manual_seed(classes)
    logits = torch.randn(classes, 40, 40, generator=generator)
    expected = resize_logits(logits[None], size)[0].argmax(0)
    assert torch.equal(resized_argmax(logits, size), expected)
    tied = torch.randint(0, 3, (classes, 40, 40), generator=generator).float()  # many exact ties across chunks
    for target in (size, (40, 40)):
        assert torch.equal(resized_argmax(tied, target), resize_logits(tied[None], target)[0].argmax(0))
        assert torch.equal(resized_argmax(tied, target, channels_per_step=32), resized_argmax(tied, target))


def test_the_mask_without_probabilities_is_the_argmax_of_the_probabilities_path():
    torch.manual_seed(0)
    model = setr.SETR(head="naive", img_size=32, embed_dim=32, depth=2, num_heads=2, num_classes=150, decode_index=1)
    predictor = setr.Predictor(model.eval(), mode="slide", crop=32, stride=21, test_scale=(64, 48))
    image = torch.randint(0, 256, (3, 45, 77), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    with_probs = predictor(image, return_probs=True)
    assert torch.equal(predictor(image).mask, with_probs.mask)
    assert torch.equal(with_probs.mask, with_probs.probs.argmax(0))


def test_the_default_batch_keeps_one_forwards_logits_bounded_on_the_cpu():
    """batch_size=None: on the CPU as many windows (up to 4) as keep one forward's float32 logits
    within 256 MiB; an explicit batch size is taken as given."""
    from setr.inference.predictor import AUTO_BATCH_LOGIT_BYTES

    ade = setr.SETR(**small(num_classes=150))
    cityscapes = setr.SETR(**small(num_classes=19))
    assert AUTO_BATCH_LOGIT_BYTES == 256 * 2**20
    assert Predictor(ade, mode="slide", crop=512, stride=341).per_forward(512, 512) == 1  # 157 MB a window
    assert Predictor(ade).per_forward(256, 256) == 4  # 39 MB a window
    assert Predictor(cityscapes).per_forward(768, 768) == 4  # 45 MB a window
    assert Predictor(cityscapes).per_forward(1024, 2048) == 1  # 159 MB an image
    assert Predictor(ade, batch_size=3).per_forward(512, 512) == 3
    assert "batch_size=auto" in repr(Predictor(ade))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        Predictor(ade, batch_size=0)


def test_a_predictor_opens_a_model_folder_by_its_path(tmp_path):
    torch.manual_seed(0)
    model = setr.SETR(**small(num_classes=5)).eval()
    model.save_pretrained(tmp_path / "mine")
    image = np.random.default_rng(0).integers(0, 256, (37, 52, 3), dtype=np.uint8)
    from_folder = Predictor(str(tmp_path / "mine"), mode="whole")(image).mask
    from_module = Predictor(model, mode="whole")(image).mask
    assert torch.equal(from_folder, from_module)
    with pytest.raises(FileNotFoundError, match="no exported model"):
        Predictor(str(tmp_path / "absent.onnx"))
