"""Inference with the official SETR test protocol: preprocessing, test resizes, sliding window, ms+flip."""

from .evaluate import evaluate
from .predictor import MODES, Predictor, Segmentation, predict, resolve_protocol
from .preprocess import ImageInput, normalize, preprocess, to_rgb_tensor
from .resize import multi_scale_sizes, resize_image, single_scale_size
from .sliding import slide_inference, whole_inference, window_boxes
from .visualize import mask_to_image, overlay, palette_for

__all__ = [
    "MODES", "ImageInput", "Predictor", "Segmentation", "evaluate", "mask_to_image", "multi_scale_sizes",
    "normalize", "overlay", "palette_for", "predict", "preprocess", "resize_image", "resolve_protocol",
    "single_scale_size", "slide_inference", "to_rgb_tensor", "whole_inference", "window_boxes",
]  # fmt: skip
