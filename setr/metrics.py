"""Streaming segmentation metrics from a confusion matrix: IoU, accuracy, mIoU, mAcc, aAcc."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["ConfusionMatrix"]


class ConfusionMatrix:
    """Accumulates a ``(num_classes, num_classes)`` confusion matrix (rows: truth, columns: prediction).

    Pixels whose truth is ``ignore_index`` (or outside ``[0, num_classes)``) are not counted.
    Per-class IoU and accuracy are NaN for classes that never occur in the truth nor the
    predictions (IoU) or in the truth (accuracy), and the means skip them (mmseg's convention).

    ``exclude_classes`` scores a model on a subset of its classes, e.g. a 60-class Pascal Context
    model by the 59-class convention (``exclude_classes=[0]``): pixels whose truth is an excluded
    class are not counted, the excluded classes leave the per-class results and the means, and a
    pixel of a kept class predicted as an excluded class still counts as a miss.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        class_names: Sequence[str] | None = None,
        exclude_classes: Sequence[int] = (),
    ) -> None:
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        if any(not 0 <= c < num_classes for c in exclude_classes):
            raise ValueError(f"exclude_classes {list(exclude_classes)} must be class indices in [0, {num_classes})")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        self.exclude_classes = sorted(set(exclude_classes))
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    @property
    def kept_classes(self) -> list[int]:
        """Indices of the classes that are scored (all but ``exclude_classes``)."""
        return [c for c in range(self.num_classes) if c not in self.exclude_classes]

    def reset(self) -> None:
        self.matrix.zero_()

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: class-index tensors of the same shape, e.g. ``(B, H, W)`` or ``(H, W)``."""
        if prediction.shape != target.shape:
            raise ValueError(
                f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape; "
                "resize the prediction to the label size first"
            )
        prediction = prediction.reshape(-1).to(torch.int64).cpu()
        target = target.reshape(-1).to(torch.int64).cpu()
        valid = (target != self.ignore_index) & (target >= 0) & (target < self.num_classes)
        for excluded in self.exclude_classes:
            valid &= target != excluded
        prediction, target = prediction[valid], target[valid]
        if prediction.numel() and (prediction.min() < 0 or prediction.max() >= self.num_classes):
            raise ValueError(f"predictions must be class indices in [0, {self.num_classes})")
        counts = torch.bincount(target * self.num_classes + prediction, minlength=self.num_classes**2)
        self.matrix += counts.reshape(self.num_classes, self.num_classes)

    def all_reduce(self) -> None:
        """Sum the matrix over all processes of the default ``torch.distributed`` group (no-op otherwise)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        backend = dist.get_backend()
        device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        matrix = self.matrix.to(device)
        dist.all_reduce(matrix, op=dist.ReduceOp.SUM)
        self.matrix = matrix.cpu()

    def compute(self) -> dict[str, Any]:
        """``{"IoU": [...], "Acc": [...], "mIoU", "mAcc", "aAcc"}``; fractions in [0, 1], NaN where undefined.

        The per-class lists follow :attr:`kept_classes` (every class unless some are excluded).
        """
        matrix = self.matrix.to(torch.float64)
        true_positive = matrix.diag()
        truth = matrix.sum(1)
        predicted = matrix.sum(0)
        union = truth + predicted - true_positive
        kept = torch.tensor(self.kept_classes, dtype=torch.long)
        iou = (true_positive / union)[kept]  # 0/0 -> NaN for classes seen nowhere
        acc = (true_positive / truth)[kept]
        total = matrix.sum()
        true_positive = true_positive[kept]
        return {
            "IoU": iou.tolist(),
            "Acc": acc.tolist(),
            "mIoU": float(iou.nanmean()) if not torch.isnan(iou).all() else math.nan,
            "mAcc": float(acc.nanmean()) if not torch.isnan(acc).all() else math.nan,
            "aAcc": float(true_positive.sum() / total) if total > 0 else math.nan,
        }

    def table(self) -> str:
        """A per-class text table (percentages) followed by the summary line."""
        result = self.compute()
        names = [self.class_names[c] for c in self.kept_classes]
        width = max(12, *(len(n) for n in names))
        lines = [f"{'class':<{width}}  {'IoU':>6}  {'Acc':>6}"]
        for name, iou, acc in zip(names, result["IoU"], result["Acc"]):
            lines.append(f"{name:<{width}}  {_pct(iou)}  {_pct(acc)}")
        lines.append(f"mIoU {_pct(result['mIoU'])}  mAcc {_pct(result['mAcc'])}  aAcc {_pct(result['aAcc'])}")
        return "\n".join(lines)


def _pct(value: float) -> str:
    return "   nan" if math.isnan(value) else f"{100 * value:6.2f}"
