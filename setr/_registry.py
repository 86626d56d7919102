"""Model names: registration, listing, lookup with helpful errors."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models.segmentor import SETR
    from .pretrained import PretrainedCfg

__all__ = ["get_entrypoint", "is_model", "list_models", "register_model", "split_model_name"]

_ENTRYPOINTS: dict[str, Callable[..., SETR]] = {}


def register_model(fn: Callable[..., SETR]) -> Callable[..., SETR]:
    """Register ``fn`` under its ``__name__`` as a ``create_model`` entry point."""
    if fn.__name__ in _ENTRYPOINTS:
        raise ValueError(f"model name {fn.__name__!r} is registered twice")
    _ENTRYPOINTS[fn.__name__] = fn
    return fn


def split_model_name(name: str) -> tuple[str, str | None]:
    """``"setr_pup_vitl_cityscapes.official_80k" -> ("setr_pup_vitl_cityscapes", "official_80k")``."""
    base, _, tag = name.partition(".")
    return base, (tag or None)


def _pretrained_table() -> dict[str, dict[str, PretrainedCfg]]:
    from .pretrained import PRETRAINED

    return PRETRAINED


def _all_names() -> list[str]:
    tagged = [f"{name}.{tag}" for name, tags in _pretrained_table().items() for tag in tags]
    return sorted(_ENTRYPOINTS) + sorted(tagged)


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Sorted model names matching a shell-style ``pattern``.

    Args:
        pattern: e.g. ``"*mla*"``; matched against ``name`` (and ``name.tag`` with ``pretrained``).
        pretrained: list every released checkpoint as ``name.tag`` instead of the architectures.
    """
    if pretrained:
        names = [f"{n}.{t}" for n, tags in _pretrained_table().items() for t in tags]
    else:
        names = list(_ENTRYPOINTS)
    return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))


def is_model(name: str) -> bool:
    base, tag = split_model_name(name)
    if base not in _ENTRYPOINTS:
        return False
    return tag is None or tag in _pretrained_table().get(base, {})


def unknown_name_error(name: str) -> KeyError:
    close = difflib.get_close_matches(name.lower(), _all_names(), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return KeyError(f"unknown model {name!r}.{hint} See setr.list_models() for every name.")


def get_entrypoint(name: str) -> Callable[..., SETR]:
    """The builder of architecture ``name`` (no tag); ``KeyError`` with close names otherwise."""
    if name not in _ENTRYPOINTS:
        raise unknown_name_error(name)
    return _ENTRYPOINTS[name]


def get_pretrained_cfg(name: str) -> tuple[str, str, PretrainedCfg] | None:
    """``(name, tag, cfg)`` for ``name`` or ``name.tag``; the default tag when none is given.

    ``None`` when the name has no released weights and no tag was asked for.
    """
    base, tag = split_model_name(name)
    get_entrypoint(base)
    tags = _pretrained_table().get(base)
    if not tags:
        if tag is not None:
            raise KeyError(f"model {base!r} has no released weights, so no tag {tag!r}")
        return None
    if tag is None:
        tag = next(iter(tags))
    if tag not in tags:
        raise KeyError(f"model {base!r} has no tag {tag!r}; its tags: {', '.join(tags)}")
    return base, tag, tags[tag]
