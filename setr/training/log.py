"""The run log of a training run: ``log.csv``, and TensorBoard when asked for and installed."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..files import atomic_write
from ..metrics import ConfusionMatrix

__all__ = ["RunLog"]


class RunLog:
    """``log.csv`` rows of training and validation values (plus TensorBoard scalars), and
    ``metrics.json``, the last validation's full result.

    On resume (``resumed_at`` given), rows past the checkpoint's iteration are dropped, so the log
    reads as one run.
    """

    FIELDS = ["iteration", "lr", "loss", "loss_decode", "loss_aux", "mIoU", "mAcc", "aAcc", "seconds"]

    def __init__(self, out: str | Path, resumed_at: int | None = None, tensorboard: bool = False) -> None:
        self.path = Path(out) / "log.csv"
        self.metrics_path = Path(out) / "metrics.json"
        self.begin = time.perf_counter()
        rows = []
        if resumed_at is not None and self.path.exists():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["iteration"]) <= resumed_at]
        self.text = io.StringIO(newline="")  # the whole log: each row rewrites the file, never half of it
        writer = csv.DictWriter(self.text, self.FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        self._save()  # the kept rows replace the old log whole
        self.board = _tensorboard(Path(out)) if tensorboard else None

    def write(self, group: str, iteration: int, **values: float) -> None:
        """Add one row; ``group`` (``train``/``val``) prefixes the TensorBoard tags.

        The log is replaced whole (:func:`setr.files.atomic_write`): a full disk leaves the rows
        before it, not a half row.
        """
        row = dict(iteration=iteration, seconds=round(time.perf_counter() - self.begin, 1), **values)
        mark = self.text.tell()
        csv.DictWriter(self.text, self.FIELDS).writerow(
            {k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()}
        )
        try:
            self._save()
        except OSError:
            self.text.truncate(mark)  # the log on disk is still without the row
            self.text.seek(mark)
            raise
        if self.board:
            for key, value in values.items():
                self.board.add_scalar(f"{group}/{key}", value, iteration)

    def log_losses(self, iteration: int, lr: float, losses: Mapping[str, float]) -> None:
        """A training row: lr, total loss, decode loss and the mean auxiliary loss."""
        aux = [v for k, v in losses.items() if k.startswith("aux")]
        loss_aux = sum(aux) / len(aux) if aux else 0.0
        self.write("train", iteration, lr=lr, loss=losses["loss"], loss_decode=losses["decode"], loss_aux=loss_aux)

    def log_validation(self, iteration: int, metric: ConfusionMatrix) -> dict[str, Any]:
        """A validation row and ``metrics.json`` (per-class table included); prints the scores."""
        result = metric.compute()
        scores = {k: result[k] for k in ("mIoU", "mAcc", "aAcc")}
        tqdm.write(f"iteration {iteration}: " + "  ".join(f"{k} {100 * v:.2f}" for k, v in scores.items()))
        self.write("val", iteration, **scores)
        names = metric.class_names
        self.update_metrics(iteration=iteration, **result, classes=names, table=metric.table())
        return result

    def _save(self) -> None:
        data = self.text.getvalue().encode("utf-8")  # bytes: csv's own line ends, as open(newline="") gives
        with atomic_write(self.path, size=len(data)) as f:
            f.write(data)

    def update_metrics(self, **values: Any) -> None:
        """Add ``values`` to ``metrics.json`` (replacing the keys it already has)."""
        current = json.loads(self.metrics_path.read_text()) if self.metrics_path.exists() else {}
        data = (json.dumps({**current, **values}, indent=2) + "\n").encode("utf-8")
        with atomic_write(self.metrics_path, size=len(data)) as f:
            f.write(data)

    def close(self) -> None:
        if self.board:
            self.board.close()


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter  # optional: the tensorboard package
    except ImportError:
        print("--tensorboard: the tensorboard package is not installed (pip install tensorboard); logging to CSV only")
        return None
    return SummaryWriter(str(out / "tb"))
