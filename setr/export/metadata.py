"""What a runner needs to know about an exported network, stored with it as JSON."""

from __future__ import annotations

import importlib.metadata
import json
from typing import Any

from ..models import SETR

__all__ = ["METADATA_KEY", "export_metadata", "parse_metadata"]

METADATA_KEY = "setr"
"""The key of the JSON metadata: an ONNX ``metadata_props`` entry, an extra file ``setr.json`` in a
``torch.export`` archive, an ``aot_inductor.metadata`` entry of an AOTInductor package."""


def export_metadata(model: SETR, fmt: str, dynamic: bool, input_shape: tuple[int, int, int, int]) -> dict[str, Any]:
    """The metadata of an export of ``model``.

    Returns:
        ``format``, ``dynamic``, ``input_shape`` (the example ``(B, C, H, W)``; the only one a
        static export takes), ``num_classes``, ``in_chans``, ``dtype`` (of the weights and the
        input: ``float32`` or ``bfloat16``), ``config`` (the constructor
        arguments) and ``info`` (:class:`setr.ModelInfo` as a dict: classes, palette, mean/std,
        test protocol, provenance).
    """
    return {
        "setr_version": _version(),
        "format": fmt,
        "dynamic": dynamic,
        "input_shape": list(input_shape),
        "num_classes": model.num_classes,
        "in_chans": model.config.in_chans,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "config": model.get_config(),
        "info": model.info.to_dict(),
    }


def _version() -> str:
    try:
        return importlib.metadata.version("setr-pytorch")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def parse_metadata(text: str | bytes, source: str) -> dict[str, Any]:
    """The metadata dict from its JSON text; ``ValueError`` naming ``source`` when it is not ours."""
    try:
        metadata = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"{source}: its setr metadata is not JSON; was it written by `setr export`?") from None
    needed = {"format", "dynamic", "input_shape", "num_classes", "in_chans", "info"}
    if not isinstance(metadata, dict) or not needed <= set(metadata):
        raise ValueError(f"{source}: incomplete setr metadata; re-export the model with `setr export`")
    return metadata
