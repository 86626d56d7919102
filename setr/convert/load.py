"""Format detection and strict loading of any supported checkpoint into a model."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import torch

from ._common import ConversionError, check_against_model
from .io import read_checkpoint
from .mmseg import convert_mmseg
from .official import convert_official
from .paddle import convert_paddlevit

__all__ = ["FORMATS", "convert_state_dict", "detect_format", "load_checkpoint"]

_Converter = Callable[[Mapping[str, torch.Tensor], Mapping[str, Any]], dict[str, torch.Tensor]]
_CONVERTERS: dict[str, _Converter] = {
    "setr": lambda state_dict, config: dict(state_dict),
    "official": convert_official,
    "mmseg": convert_mmseg,
    "paddlevit": convert_paddlevit,
}
FORMATS = (*_CONVERTERS, "timm")
"""Every layout :func:`detect_format` names; ``timm`` (ImageNet encoders) loads only through
:func:`setr.convert.timm.load_timm_encoder`."""

# (format, key prefix that only that layout has); the first match wins.
_SIGNATURES = (
    ("paddlevit", "encoder.transformer."),
    ("setr", "encoder.blocks."),
    ("setr", "encoder.patch_embed."),
    ("official", "backbone.blocks."),
    ("mmseg", "backbone.layers."),
    ("timm", "blocks."),
)


def detect_format(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Name the layout of ``state_dict`` from its key names: one of :data:`FORMATS`.

    Raises:
        ConversionError: no known layout fits.
    """
    keys = list(state_dict)
    for fmt, prefix in _SIGNATURES:
        if any(k.startswith(prefix) for k in keys):
            return fmt
    raise ConversionError(
        "unrecognised checkpoint layout (first keys: "
        + ", ".join(keys[:5])
        + f"); supported formats: {', '.join(FORMATS)}. Is this a SETR checkpoint?"
    )


def convert_state_dict(
    state_dict: Mapping[str, torch.Tensor], model: torch.nn.Module, fmt: str | None = None
) -> dict[str, torch.Tensor]:
    """Convert ``state_dict`` (any supported layout) to ``model``'s names and check it fits exactly.

    Raises:
        ConversionError: unknown layout, keys left unmapped, missing or mis-shaped.
    """
    fmt = fmt or detect_format(state_dict)
    if fmt == "timm":
        raise ConversionError(
            "this is an ImageNet ViT checkpoint (timm layout), not a segmentation model: load it into the "
            "encoder with setr.convert.timm.load_timm_encoder(model, path)"
        )
    if fmt not in _CONVERTERS:
        raise ConversionError(f"unknown checkpoint format {fmt!r}; supported: {', '.join(_CONVERTERS)}")
    converted = _CONVERTERS[fmt](state_dict, model.config)
    check_against_model(converted, model, f"{fmt} checkpoint")
    return converted


def load_checkpoint(model: torch.nn.Module, path: str | os.PathLike, fmt: str | None = None) -> str:
    """Load the checkpoint at ``path`` into ``model`` strictly; returns the detected format.

    Raises:
        FileNotFoundError: no such file.
        ConversionError: unreadable or unsafe file, unknown layout, or weights that do not fit.
    """
    state_dict = read_checkpoint(path)
    try:
        fmt = fmt or detect_format(state_dict)
        converted = convert_state_dict(state_dict, model, fmt)
    except ConversionError as error:
        raise ConversionError(f"{path}: {error}") from None
    model.load_state_dict(converted, strict=True)
    return fmt
