"""Format detection and strict loading of any supported checkpoint into a model."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from ._common import ConversionError, check_against_model
from .io import read_checkpoint
from .official import convert_official

__all__ = ["FORMATS", "convert_state_dict", "detect_format", "load_checkpoint"]

FORMATS = ("setr", "official")


def detect_format(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Name the layout of ``state_dict``: one of :data:`FORMATS`.

    Raises:
        ConversionError: no known layout fits.
    """
    keys = list(state_dict)

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if has("encoder.blocks.") or has("encoder.patch_embed."):
        return "setr"
    if has("backbone.blocks."):
        return "official"
    raise ConversionError(
        "unrecognised checkpoint layout (first keys: "
        + ", ".join(keys[:5])
        + f"); supported formats: {', '.join(FORMATS)}"
    )


def convert_state_dict(
    state_dict: Mapping[str, torch.Tensor], model: torch.nn.Module, fmt: str | None = None
) -> dict[str, torch.Tensor]:
    """Convert ``state_dict`` (any supported layout) to ``model``'s names and check it fits exactly."""
    fmt = fmt or detect_format(state_dict)
    if fmt == "setr":
        converted = dict(state_dict)
    elif fmt == "official":
        converted = convert_official(state_dict, model.config)
    else:
        raise ConversionError(f"unknown checkpoint format {fmt!r}; supported: {', '.join(FORMATS)}")
    check_against_model(converted, model, f"{fmt} checkpoint")
    return converted


def load_checkpoint(model: torch.nn.Module, path: str | os.PathLike, fmt: str | None = None) -> str:
    """Load the checkpoint at ``path`` into ``model`` strictly; returns the detected format."""
    state_dict = read_checkpoint(path)
    fmt = fmt or detect_format(state_dict)
    try:
        converted = convert_state_dict(state_dict, model, fmt)
    except ConversionError as error:
        raise ConversionError(f"{path}: {error}") from None
    model.load_state_dict(converted, strict=True)
    return fmt
