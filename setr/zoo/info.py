"""The :class:`setr.ModelInfo` of a zoo name, from the zoo table and the dataset facts."""

from __future__ import annotations

from dataclasses import replace

from ..data.meta import DATASETS
from ..models import ModelInfo, Release
from .registry import lookup
from .table import BACKBONES, ZooEntry

__all__ = ["describe", "model_info"]


def describe(entry: ZooEntry, tag: str | None, release: Release | None, num_classes: int) -> ModelInfo:
    """What a model built from ``entry`` knows: its dataset's classes (when ``num_classes`` is the
    dataset's), palette, ignore index and official test protocol (with the release's ms ratios),
    the release (a bare zoo name means its default tag), and the ImageNet weights its encoder starts from."""
    info = ModelInfo(
        architecture=entry.architecture,
        name=entry.name,
        tag=tag,
        dataset=entry.dataset,
        encoder_init=BACKBONES[entry.backbone].encoder_init,
        release=release if tag is not None else None,
    )
    if entry.dataset is None:
        return info
    dataset = DATASETS[entry.dataset]
    protocol = dataset.protocol
    default_release = release or (entry.releases[entry.default_tag] if entry.default_tag else None)
    if default_release is not None and default_release.ms_ratios:
        protocol = replace(protocol, ms_ratios=default_release.ms_ratios)
    info = info.replace(
        protocol=protocol,
        ignore_index=dataset.ignore_index,
        reduce_zero_label=dataset.reduce_zero_label,
        mean=dataset.mean,
        std=dataset.std,
    )
    if dataset.num_classes == num_classes:  # other class counts keep the protocol, not the names
        info = info.replace(class_names=dataset.class_names, palette=dataset.palette)
    return info


def model_info(name: str) -> ModelInfo:
    """The :class:`setr.ModelInfo` a model built by ``name`` (``name`` or ``name.tag``) starts
    with, without building it: classes, palette, normalisation, test protocol and release.

    Raises:
        KeyError: unknown name or tag.
    """
    entry, tag, release = lookup(name)
    return describe(entry, tag, release, entry.kwargs()["num_classes"])
