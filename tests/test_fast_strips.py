"""The strip-by-strip last stage of a PUP-style head equals upsampling, convolving and classifying the
whole map, for any strip height, and runs only where it may."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from setr import SETR, optimize_for_inference
from setr.fast import FastUpHead, can_run_in_strips, upsample_conv_classify_in_strips
from setr.models.heads import ConvBNReLU

from .conftest import tiny_kwargs
from .test_fast_convs import randomise_norms


def make_stage(kernel: int, channels: int = 6, classes: int = 5, seed: int = 0):
    torch.manual_seed(seed)
    stage = ConvBNReLU(channels, channels, kernel).eval()
    randomise_norms(stage, seed)
    return stage, torch.nn.Conv2d(channels, classes, 1)


def whole_map(x, scale, stage, classifier):
    """The reference: every step on the full map, NCHW, BatchNorm as its own pass."""
    size = (x.shape[-2] * scale, x.shape[-1] * scale)
    up = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return classifier(F.relu(stage.bn(stage.conv(up))))


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("kernel", [1, 3, 5])
@pytest.mark.parametrize("rows", [1, 2, 5, 1000])
def test_strips_equal_the_whole_map(scale: int, kernel: int, rows: int) -> None:
    stage, classifier = make_stage(kernel)
    x = torch.randn(2, 6, 7, 5).contiguous(memory_format=torch.channels_last)
    row_bytes = 2 * 6 * 5 * scale * 4  # one row of the upsampled map
    assert can_run_in_strips(stage, classifier)
    with torch.no_grad():
        got = upsample_conv_classify_in_strips(x, scale, stage, classifier, strip_bytes=rows * row_bytes)
        expected = whole_map(x, scale, stage, classifier)
    assert got.shape == (2, 5, 7 * scale, 5 * scale)
    assert got.is_contiguous()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_strips_are_refused_where_they_would_differ() -> None:
    stage, classifier = make_stage(3)
    assert can_run_in_strips(stage, classifier)
    handle = stage.act.register_forward_hook(lambda *args: None)
    assert not can_run_in_strips(stage, classifier), "a hook would be skipped"
    handle.remove()
    assert not can_run_in_strips(stage, torch.nn.Conv2d(6, 5, 3, padding=1)), "the classifier is 1x1"
    strided = make_stage(3)[0]
    strided.conv.stride = (2, 2)
    assert not can_run_in_strips(strided, classifier)


def test_pup_head_runs_its_last_stage_in_strips_and_matches_the_plain_path() -> None:
    """The whole PUP model, strips of a few rows against the plain model; under autograd and in
    training mode the optimised head runs whole (batch statistics need the whole map)."""
    torch.manual_seed(0)
    model = SETR(**tiny_kwargs("pup")).eval()
    randomise_norms(model)
    fast = optimize_for_inference(model)
    head = fast.decode_head
    assert type(head) is FastUpHead and head.strips
    assert not any(aux.strips for aux in fast.aux_heads)  # one x4 stage: nothing to strip
    head.strip_bytes = 3 * 256 * 48 * 4  # strips of 3 rows of the 32 x 48, 256-channel map
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = model(x)
        got = fast(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast(x), expected, rtol=1e-5, atol=1e-5)  # autograd on: whole map
