"""Whole-image and sliding-window inference on normalised image batches."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["slide_inference", "whole_inference", "window_boxes"]


def window_boxes(height: int, width: int, crop: int, stride: int) -> list[tuple[int, int, int, int]]:
    """The official sliding-window placement, row by row.

    ``h_grids = max(H - crop + stride - 1, 0) // stride + 1`` (likewise for the width); window
    ``(i, j)`` starts at ``(i * stride, j * stride)`` and the last ones are shifted back so that
    they end at the border.

    Returns:
        ``(y1, y2, x1, x2)`` boxes; each is ``crop`` wide/high unless the image is smaller.
    """
    if crop <= 0 or stride <= 0:
        raise ValueError(f"crop ({crop}) and stride ({stride}) must be positive")
    if stride > crop:
        raise ValueError(f"stride {stride} > crop {crop} would leave pixels uncovered; use stride <= crop")
    rows = max(height - crop + stride - 1, 0) // stride + 1
    cols = max(width - crop + stride - 1, 0) // stride + 1
    boxes = []
    for i in range(rows):
        y2 = min(i * stride + crop, height)
        y1 = max(y2 - crop, 0)
        for j in range(cols):
            x2 = min(j * stride + crop, width)
            x1 = max(x2 - crop, 0)
            boxes.append((y1, y2, x1, x2))
    return boxes


def whole_inference(model: nn.Module, images: torch.Tensor, batch_size: int = 4) -> torch.Tensor:
    """Run the network on whole images.

    Args:
        model: a segmentor: ``(B, 3, H, W) -> (B, C, H, W)`` logits.
        images: normalised ``(B, 3, H, W)``.
        batch_size: images per forward pass.

    Returns:
        Logits ``(B, C, H, W)``.
    """
    if images.shape[0] == 0:
        return model(images)
    return torch.cat([model(chunk) for chunk in images.split(max(batch_size, 1))])


_CLASSES_PER_ADD = 16


def slide_inference(
    model: nn.Module, images: torch.Tensor, crop: int, stride: int, batch_size: int = 4
) -> torch.Tensor:
    """Sliding-window inference with the official semantics, windows run in batches.

    Window logits are summed where windows overlap and divided by the number of windows covering
    each pixel (logits, not probabilities, are averaged). An image smaller than ``crop`` is padded
    at the bottom/right with zeros (the mean colour after normalisation, as the training
    ``Pad``) and the padding is cut from the result.

    Args:
        model: a segmentor: ``(N, 3, crop, crop) -> (N, C, crop, crop)`` logits.
        images: normalised ``(B, 3, H, W)``.
        crop: window side.
        stride: step between windows (``<= crop``).
        batch_size: windows per forward pass (windows of all ``B`` images are pooled).

    Returns:
        Averaged logits ``(B, C, H, W)``; merged in float32 (or float64) whatever the network's
        dtype, so bf16 windows do not lose digits where they overlap.
    """
    batch, _, height, width = images.shape
    if batch == 0:  # an empty result with the model's class count
        probe = model(images[:, :, : min(crop, height), : min(crop, width)])
        return probe.new_zeros(0, probe.shape[1], height, width, dtype=torch.promote_types(probe.dtype, torch.float32))
    pad_h, pad_w = max(crop - height, 0), max(crop - width, 0)
    if pad_h or pad_w:
        images = F.pad(images, (0, pad_w, 0, pad_h))
    full_h, full_w = images.shape[-2:]
    boxes = window_boxes(full_h, full_w, crop, stride)
    jobs = [(index, box) for box in boxes for index in range(batch)]

    logits: torch.Tensor | None = None
    for start in range(0, len(jobs), max(batch_size, 1)):
        chunk = jobs[start : start + max(batch_size, 1)]
        windows = torch.stack([images[i, :, y1:y2, x1:x2] for i, (y1, y2, x1, x2) in chunk])
        out = model(windows)
        if logits is None:
            merge_dtype = torch.promote_types(out.dtype, torch.float32)
            logits = out.new_zeros(batch, out.shape[1], full_h, full_w, dtype=merge_dtype)
        for (i, (y1, y2, x1, x2)), window_logits in zip(chunk, out):
            # a few classes at a time: adding bf16 windows into the fp32 sum casts the operand to
            # a temporary copy, which for all 150 ADE20K classes would be as large as the sum
            for c in range(0, window_logits.shape[0], _CLASSES_PER_ADD):
                logits[i, c : c + _CLASSES_PER_ADD, y1:y2, x1:x2] += window_logits[c : c + _CLASSES_PER_ADD]
        del windows, out, window_logits  # before the next forward: two windows' logits never coexist
    assert logits is not None
    count = torch.zeros(full_h, full_w, dtype=logits.dtype, device=logits.device)
    for y1, y2, x1, x2 in boxes:
        count[y1:y2, x1:x2] += 1
    return logits.div_(count)[..., :height, :width]  # in place: a second full-size map would double the peak
