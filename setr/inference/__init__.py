"""Inference with the official SETR test protocol: preprocessing, test resizes, sliding window, ms+flip."""

from .calibration import CalibrationError, CalibrationWindows
from .conventions import pcontext59_classes
from .evaluate import evaluate
from .folders import collect_images
from .predictor import MODES, Predictor, Segmentation, predict, resolve_protocol
from .preprocess import ImageInput, normalize, preprocess, to_rgb_tensor
from .report import default_report_path, eval_report, eval_table
from .resize import multi_scale_sizes, resize_image, single_scale_size
from .sliding import slide_inference, whole_inference, window_boxes
from .visualize import mask_to_image, overlay, palette_for

__all__ = [
    "MODES", "CalibrationError", "CalibrationWindows", "ImageInput", "Predictor", "Segmentation", "collect_images", "default_report_path", "eval_report",
    "eval_table", "evaluate", "mask_to_image", "multi_scale_sizes", "normalize", "overlay", "palette_for",
    "pcontext59_classes", "predict", "preprocess", "resize_image", "resolve_protocol", "single_scale_size",
    "slide_inference", "to_rgb_tensor", "whole_inference", "window_boxes",
]  # fmt: skip
