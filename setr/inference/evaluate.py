"""The evaluation loop: a dataset through a :class:`Predictor` into a confusion matrix, over all ranks."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..data.datasets import sample_pair
from ..data.io import ImageReadError
from ..distributed import DistributedContext, all_gather_objects
from ..metrics import ConfusionMatrix
from .predictor import Predictor

__all__ = ["evaluate"]


class _SafeSamples:
    """This rank's dataset items as ``(image, label)``, a failure returned as its message instead
    of raised (so one broken file does not end a long evaluation)."""

    def __init__(self, dataset: Dataset, indices: Sequence[int], skip_errors: bool) -> None:
        self.dataset = dataset
        self.indices = list(indices)
        self.skip_errors = skip_errors

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        try:
            return sample_pair(self.dataset[self.indices[i]])
        except (ImageReadError, OSError, ValueError) as error:
            if not self.skip_errors:
                raise
            return " ".join(str(error).split())


def evaluate(
    predictor: Predictor,
    dataset: Dataset,
    metric: ConfusionMatrix,
    *,
    ctx: DistributedContext | None = None,
    limit: int | None = None,
    ms_flip: bool = False,
    workers: int = 0,
    skip_errors: bool = False,
    progress: bool = False,
) -> list[str]:
    """Predict every image of ``dataset`` (this rank's share) and count it into ``metric``, then sum
    ``metric`` over the ranks.

    Args:
        predictor: runs the test protocol.
        dataset: samples as ``(image uint8 (3, H, W), label (H, W))`` pairs or ``{"image", "mask"}``
            dicts.
        metric: the confusion matrix to fill (reduced over ranks at the end).
        ctx: the process group (rank ``r`` of ``n`` takes images ``r, r + n, ...``); one process
            by default.
        limit: evaluate the first ``limit`` images only.
        ms_flip: multi-scale + flip testing.
        workers: image-reading worker processes.
        skip_errors: report an unreadable sample and go on, instead of raising.
        progress: show a progress bar with the running mIoU (rank 0 only).

    Returns:
        The messages of the samples that failed, from every rank.
    """
    ctx = ctx or DistributedContext()
    count = len(dataset) if limit is None else min(limit, len(dataset))
    samples = _SafeSamples(dataset, range(ctx.rank, count, ctx.world_size), skip_errors)
    loader = DataLoader(samples, batch_size=None, num_workers=max(workers, 0))
    failed: list[str] = []
    bar = tqdm(loader, desc="eval", unit="img", dynamic_ncols=True, file=sys.stderr, disable=not progress or ctx.rank)
    for sample in bar:
        if isinstance(sample, str):
            tqdm.write(f"skipped {sample}", file=sys.stderr)
            failed.append(sample)
            continue
        image, label = sample
        metric.update(predictor(image, ms_flip=ms_flip).mask, label)
        if progress:
            bar.set_postfix(mIoU=f"{100 * metric.compute()['mIoU']:.2f}")
    metric.all_reduce()
    return [message for part in all_gather_objects(failed, ctx) for message in part]
