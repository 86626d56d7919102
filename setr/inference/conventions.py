"""Scoring conventions of the evaluation datasets that differ from their label files."""

from __future__ import annotations

__all__ = ["pcontext59_classes"]


def pcontext59_classes(model_classes: int | None) -> tuple[int, list[int]]:
    """The 59-class Pascal Context convention (background not scored) for a model with ``model_classes`` outputs.

    The released Pascal Context models predict 60 classes, background (0) included; the
    convention most papers report scores the 59 others. Two models fit it:

    - 59 outputs: the dataset's 59-class labels (``PascalContext(..., num_classes=59)``: background
      ignored, the other labels shifted down by one), every class scored.
    - 60 outputs (any count but 59): the 60-class labels, and the metric excludes class 0
      (``ConfusionMatrix(60, exclude_classes=[0])``): background pixels are not counted, and a
      pixel of another class predicted as background is still a miss. A model with neither 59
      nor 60 outputs does not fit the dataset, which the caller reports.

    Args:
        model_classes: the model's number of outputs (``None``: not known yet, as before loading).

    Returns:
        ``(num_classes, exclude_classes)``: the ``num_classes`` of
        :class:`setr.data.datasets.PascalContext` and the ``exclude_classes`` of
        :class:`setr.metrics.ConfusionMatrix`.

    Example:
        >>> pcontext59_classes(60)
        (60, [0])
        >>> pcontext59_classes(59)
        (59, [])
    """
    return (59, []) if model_classes == 59 else (60, [0])
