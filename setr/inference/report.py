"""The result of an evaluation as ``setr eval`` reports it: the JSON report, its table, its file name."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..data.meta import EvalProtocol
from ..metrics import ConfusionMatrix

__all__ = ["default_report_path", "eval_report", "eval_table"]


def eval_report(
    metric: ConfusionMatrix,
    failed: Sequence[str] = (),
    *,
    attempted: int,
    protocol: EvalProtocol | Mapping[str, Any] | None = None,
    model: str | None = None,
    checkpoint: str | None = None,
    dataset: str | None = None,
    root: str | os.PathLike | None = None,
    split: str | None = None,
    ms_flip: bool = False,
) -> dict[str, Any]:
    """The report ``setr eval --json`` writes, from a filled confusion matrix and the facts of the run.

    Args:
        metric: the confusion matrix :func:`setr.inference.evaluate` filled (summed over ranks).
        failed: the messages of the samples that failed, as :func:`setr.inference.evaluate` returns them.
        attempted: how many images were evaluated, the failed ones included (``limit`` or the
            dataset's length); the report's ``images`` is ``attempted - len(failed)``.
        protocol: the test protocol used (``predictor.protocol``).
        model: the model's name or folder.
        checkpoint: the weights file.
        dataset: the dataset's name (``"pcontext59"`` for the 59-class convention).
        root: the dataset folder.
        split: the dataset split (``None``: the dataset's default).
        ms_flip: whether multi-scale + flip testing was used.

    Returns:
        A JSON-able dict, keys in this order: ``model``, ``checkpoint``, ``dataset``, ``root``,
        ``split``, ``ms_flip``, ``protocol`` (the protocol's fields), ``images``, ``failed``,
        ``pixels`` (counted pixels), ``mIoU``, ``mAcc``, ``aAcc`` and ``per_class``
        (``{class name: {"IoU", "Acc"}}`` over :attr:`ConfusionMatrix.kept_classes`). Scores are
        fractions in [0, 1]; an undefined score (NaN: a class absent from truth and prediction)
        is ``None``.
    """
    result = metric.compute()
    names = [metric.class_names[c] for c in metric.kept_classes]
    if isinstance(protocol, EvalProtocol):
        protocol = asdict(protocol)
    return {
        "model": model,
        "checkpoint": checkpoint,
        "dataset": dataset,
        "root": None if root is None else str(root),
        "split": split,
        "ms_flip": ms_flip,
        "protocol": None if protocol is None else dict(protocol),
        "images": attempted - len(failed),
        "failed": list(failed),
        "pixels": int(metric.matrix.sum()),
        **{key: _finite(result[key]) for key in ("mIoU", "mAcc", "aAcc")},
        "per_class": {
            name: {"IoU": _finite(iou), "Acc": _finite(acc)}
            for name, iou, acc in zip(names, result["IoU"], result["Acc"])
        },
    }


def eval_table(report: Mapping[str, Any]) -> str:
    """The per-class table of a report (percentages) and its summary line, as ``setr eval`` prints it.

    It is :meth:`ConfusionMatrix.table` of the run's matrix (when the class names are distinct),
    rebuilt from the report alone, e.g. one read back from its JSON file.

    Args:
        report: a dict :func:`eval_report` returned, or its JSON file read back.

    Returns:
        ``class IoU Acc`` lines, one per class, then ``mIoU .. mAcc .. aAcc ..``; ``nan`` for
        undefined scores.
    """
    per_class = report["per_class"]
    width = max([12, *(len(name) for name in per_class)])
    lines = [f"{'class':<{width}}  {'IoU':>6}  {'Acc':>6}"]
    for name, scores in per_class.items():
        lines.append(f"{name:<{width}}  {_pct(scores['IoU'])}  {_pct(scores['Acc'])}")
    lines.append(f"mIoU {_pct(report['mIoU'])}  mAcc {_pct(report['mAcc'])}  aAcc {_pct(report['aAcc'])}")
    return "\n".join(lines)


def default_report_path(model: str | os.PathLike, dataset: str) -> Path:
    """Where ``setr eval`` writes its report without ``--json``: ``setr_eval_<model>_<dataset>.json``.

    Args:
        model: the model's name, or its folder (the last path part is used).
        dataset: the dataset's name.
    """
    return Path(f"setr_eval_{Path(model).name}_{dataset}.json")


def _finite(value: float | None) -> float | None:
    """NaN -> ``None`` (JSON has no NaN)."""
    return None if value is None or math.isnan(value) else value


def _pct(value: float | None) -> str:
    return "   nan" if value is None or math.isnan(value) else f"{100 * value:6.2f}"
