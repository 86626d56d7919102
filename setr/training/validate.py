"""Validation during training, and the predicted masks and panels written at the end of a run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import sample_pair
from ..data.meta import EvalProtocol
from ..distributed import DistributedContext
from ..files import atomic_target
from ..inference import Predictor, evaluate, mask_to_image, palette_for
from ..metrics import ConfusionMatrix

__all__ = ["save_predictions", "validate"]


@torch.no_grad()
def validate(
    model: nn.Module,
    dataset: Dataset,
    ctx: DistributedContext,
    class_names: Sequence[str],
    protocol: EvalProtocol | None = None,
    ignore_index: int = 255,
) -> ConfusionMatrix:
    """The confusion matrix of ``model`` over ``dataset`` (official test protocol), each rank taking
    a share; ``model`` is back in training mode afterwards.

    Under DDP the parameters are equal on every rank but the BatchNorm statistics are not: rank 0's
    are broadcast first, so every rank evaluates (and later saves) the same network.
    """
    if ctx.distributed:
        for buffer in model.buffers():
            torch.distributed.broadcast(buffer, src=0)
    predictor = Predictor(model, protocol, batch_size=4, device=ctx.device)
    metric = ConfusionMatrix(len(class_names), ignore_index, class_names)
    evaluate(predictor, dataset, metric, ctx=ctx)
    model.train()
    return metric


@torch.no_grad()
def save_predictions(
    model: nn.Module,
    dataset: Dataset,
    out: str | Path,
    count: int,
    palette: Sequence[Sequence[int]] | None = None,
    protocol: EvalProtocol | None = None,
) -> None:
    """For the first ``count`` samples: ``val_NNN_pred.png`` (palette mask) and ``val_NNN_panel.png``
    (image | ground truth | prediction); ignored pixels of the truth are white."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    predictor = Predictor(model, protocol, batch_size=4)
    num_classes = model.num_classes
    colours = np.concatenate([palette_for(num_classes, palette), np.full((256 - num_classes, 3), 255, np.uint8)])
    for index in range(min(count, len(dataset))):
        image, label = sample_pair(dataset[index])
        mask = predictor(image).mask
        with atomic_target(out / f"val_{index:03d}_pred.png") as staged:
            mask_to_image(mask, colours[:num_classes]).save(staged, format="PNG")
        panel = [image.permute(1, 2, 0).numpy(), colours[label.clamp(0, 255).numpy()], colours[mask.numpy()]]
        with atomic_target(out / f"val_{index:03d}_panel.png") as staged:
            Image.fromarray(np.concatenate(panel, 1).astype(np.uint8)).save(staged, format="PNG")
    model.train()
