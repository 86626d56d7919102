"""Inference with the official SETR test protocol: preprocessing, test resizes, sliding window, ms+flip."""

from .evaluate import evaluate
from .predictor import MODES, Predictor, Segmentation, predict, resolve_protocol
from .preprocess import ImageInput, is_batch, normalize, preprocess, to_rgb_tensor, to_rgb_tensors
from .resize import multi_scale_sizes, rescale_size, resize_image, short_side_size, single_scale_size
from .sliding import slide_inference, whole_inference, window_boxes
from .visualize import mask_to_image, overlay, palette_for

__all__ = [
    "MODES", "ImageInput", "Predictor", "Segmentation", "evaluate", "is_batch", "mask_to_image", "multi_scale_sizes",
    "normalize", "overlay", "palette_for", "predict", "preprocess", "rescale_size", "resize_image",
    "resolve_protocol", "short_side_size", "slide_inference", "single_scale_size", "to_rgb_tensor",
    "to_rgb_tensors", "whole_inference", "window_boxes",
]  # fmt: skip
