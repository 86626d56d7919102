"""SETR in HF transformers: ``AutoModelForSemanticSegmentation``, ``pipeline("image-segmentation")``, ``Trainer``.

Needs the ``transformers`` extra (``pip install "setr-pytorch[transformers]"``). Importing this
module registers SETR with ``AutoConfig``, ``AutoModelForSemanticSegmentation`` and
``AutoImageProcessor`` (``model_type="setr"``), so that they and ``pipeline`` load a folder written by
:meth:`setr.SETR.save_pretrained` as it is. A folder saved through transformers also carries
``auto_map`` and the small module it names, so it loads with ``trust_remote_code=True`` in a process
that never imported setr (setr must be installed there).

Example:
    >>> import setr.integrations.transformers  # registers the Auto classes
    >>> from transformers import pipeline
    >>> masks = pipeline("image-segmentation", model="runs/train/final")("street.jpg")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from transformers import AutoConfig, AutoImageProcessor, AutoModelForSemanticSegmentation, EvalPrediction

from ..metrics import ConfusionMatrix
from .hf_config import AUTO_MAP, REMOTE_CODE_FILE, SetrConfig
from .hf_model import SetrForSemanticSegmentation
from .hf_processor import SetrImageProcessor

__all__ = [
    "AUTO_MAP", "REMOTE_CODE_FILE", "SetrConfig", "SetrForSemanticSegmentation", "SetrImageProcessor",
    "segmentation_metrics",
]  # fmt: skip

AutoConfig.register(SetrConfig.model_type, SetrConfig, exist_ok=True)
AutoModelForSemanticSegmentation.register(SetrConfig, SetrForSemanticSegmentation, exist_ok=True)
AutoImageProcessor.register(
    SetrConfig, image_processor_classes={"torchvision": SetrImageProcessor, "pil": SetrImageProcessor}, exist_ok=True
)


def segmentation_metrics(
    num_labels: int, ignore_index: int = 255, class_names: list[str] | None = None
) -> Callable[[EvalPrediction], dict[str, Any]]:
    """A ``compute_metrics`` for ``Trainer``: setr's mIoU, mAcc and aAcc (:class:`setr.metrics.ConfusionMatrix`).

    The predictions are the logits ``(N, C, H, W)`` at the labels' size (``SetrForSemanticSegmentation``
    gives them at the input size) or class indices ``(N, H, W)``.

    Example:
        >>> trainer = Trainer(model, args, ..., compute_metrics=segmentation_metrics(model.config.num_labels))
    """

    def compute_metrics(prediction: EvalPrediction) -> dict[str, Any]:
        logits, labels = prediction.predictions, prediction.label_ids
        logits = logits[0] if isinstance(logits, tuple) else logits
        masks = torch.as_tensor(np.asarray(logits))
        masks = masks.argmax(1) if masks.ndim == 4 else masks
        matrix = ConfusionMatrix(num_labels, ignore_index, class_names)
        matrix.update(masks, torch.as_tensor(np.asarray(labels)))
        result = matrix.compute()
        return {"mIoU": result["mIoU"], "mAcc": result["mAcc"], "aAcc": result["aAcc"]}

    return compute_metrics
