"""Model names: listing, lookup with helpful errors, registration of a user's own architectures, and
the :class:`setr.ModelInfo` a name describes (from the zoo table and the dataset facts)."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import replace

from ..data.meta import DATASETS
from ..models import SETR, ModelInfo, Release
from .table import BACKBONES, ZOO, ZooEntry

__all__ = [
    "describe", "is_model", "list_models", "lookup", "model_info", "register_model", "split_model_name",
]  # fmt: skip

_USER_ENTRYPOINTS: dict[str, Callable[..., SETR]] = {}


def register_model(fn: Callable[..., SETR]) -> Callable[..., SETR]:
    """Register ``fn`` (keyword arguments -> a model) under its ``__name__`` for ``create_model``.

    Usable as a decorator. The name must not clash with a zoo name or another registered one.
    """
    name = getattr(fn, "__name__", None)
    if not callable(fn) or not isinstance(name, str):
        raise TypeError(f"register_model takes a named function, got {fn!r}")
    if name in ZOO or name in _USER_ENTRYPOINTS:
        raise ValueError(f"model name {name!r} is registered twice")
    _USER_ENTRYPOINTS[name] = fn
    return fn


def split_model_name(name: str) -> tuple[str, str | None]:
    """``"setr_pup_vitl_cityscapes.official_80k" -> ("setr_pup_vitl_cityscapes", "official_80k")``.

    Raises:
        TypeError: ``name`` is not a string.
    """
    if not isinstance(name, str):
        raise TypeError(f"a model name is a string such as 'setr_pup_vitl_cityscapes', got {type(name).__name__}")
    base, _, tag = name.partition(".")
    return base, (tag or None)


def _released_names() -> list[str]:
    return [f"{entry.name}.{tag}" for entry in ZOO.values() for tag in entry.releases]


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Sorted model names matching a shell-style ``pattern``.

    Args:
        pattern: e.g. ``"*mla*"``; matched against ``name`` (and ``name.tag`` with ``pretrained``).
        pretrained: list every released checkpoint as ``name.tag`` instead of the architectures
            and dataset models.
    """
    names = _released_names() if pretrained else [*ZOO, *_USER_ENTRYPOINTS]
    return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))


def is_model(name: str) -> bool:
    """Whether ``name`` (``name`` or ``name.tag``) is a zoo name, a release or a registered model."""
    base, tag = split_model_name(name)
    if base in _USER_ENTRYPOINTS:
        return tag is None
    return base in ZOO and (tag is None or tag in ZOO[base].releases)


def unknown_name_error(name: str) -> KeyError:
    candidates = [*ZOO, *_USER_ENTRYPOINTS, *_released_names()]
    close = difflib.get_close_matches(name.lower(), candidates, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return KeyError(f"unknown model {name!r}.{hint} See setr.list_models() for every name.")


def user_entrypoint(name: str) -> Callable[..., SETR] | None:
    """The function registered with :func:`register_model` under ``name``, if any."""
    return _USER_ENTRYPOINTS.get(name)


def lookup(name: str) -> tuple[ZooEntry, str | None, Release | None]:
    """``(entry, tag, release)`` of a zoo ``name`` or ``name.tag``; a bare name with releases means
    its default tag.

    Raises:
        TypeError: ``name`` is not a string.
        KeyError: unknown name or tag (the message lists the closest names or the tags).
    """
    base, tag = split_model_name(name)
    if base not in ZOO:
        raise unknown_name_error(name)
    entry = ZOO[base]
    if tag is None:
        tag = entry.default_tag
    elif not entry.releases:
        raise KeyError(f"model {base!r} has no released weights, so no tag {tag!r}")
    elif tag not in entry.releases:
        raise KeyError(f"model {base!r} has no tag {tag!r}; its tags: {', '.join(entry.releases)}")
    return entry, tag, (entry.releases[tag] if tag else None)


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
