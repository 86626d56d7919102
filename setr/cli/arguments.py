"""How the ``setr`` subcommands read their flags: the shared model and protocol options, and the
checked value types (positive integers, fractions, protocol fields) that refuse a bad number in one
line before any work starts."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from ..data.meta import EvalProtocol
from ..fast import PRECISIONS

__all__ = [
    "add_model_args", "add_override", "add_protocol_args", "fraction", "key_value", "non_negative_float",
    "non_negative_int", "positive_float", "positive_int", "protocol_field",
]  # fmt: skip


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> ``(key, value)``, the value parsed as JSON when it is JSON, else kept as text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _number(text: str, kind: type) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
        ) from None
    if value != value or value in (float("inf"), float("-inf")):  # NaN, inf
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """``type=`` of a count that must be at least 1 (``--limit``, ``--iters``, ``--accum-steps``)."""
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """``type=`` of a count that may be 0 (``--workers``)."""
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """``type=`` of a number that must be above 0 (``--lr``)."""
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """``type=`` of a number that may be 0 (``--weight-decay``)."""
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive number, got {text!r}")
    return value


def fraction(text: str) -> float:
    """``type=`` of a number in [0, 1] (``--alpha``)."""
    value = _number(text, float)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}")
    return value


_PROTOCOL_FIELDS = tuple(f.name for f in dataclasses.fields(EvalProtocol))


def protocol_field(text: str) -> tuple[str, Any]:
    """``--protocol KEY=VALUE``: a known :class:`setr.EvalProtocol` field with a value it can take,
    checked before any model loads (sizes positive, ``test_scale`` two of them, ratios positive)."""
    key, value = key_value(text)
    if key not in _PROTOCOL_FIELDS:
        raise argparse.ArgumentTypeError(f"unknown protocol fields [{key!r}]; known: {', '.join(_PROTOCOL_FIELDS)}")

    def size(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v > 0

    def ratio(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf")

    valid = {
        "mode": lambda v: v in ("whole", "slide"),
        "crop": size,
        "stride": size,
        "short_side": lambda v: v is None or size(v),
        "test_scale": lambda v: v is None or (isinstance(v, list) and len(v) == 2 and all(map(size, v))),
        "ms_ratios": lambda v: isinstance(v, list) and len(v) > 0 and all(map(ratio, v)),
    }
    expected = {
        "mode": "whole or slide", "crop": "a positive integer", "stride": "a positive integer",
        "short_side": "a positive integer or null", "test_scale": "[long, short] positive integers or null",
        "ms_ratios": "a list of positive numbers, e.g. [0.5,1.0,1.5]",
    }  # fmt: skip
    if key in valid and not valid[key](value):
        raise argparse.ArgumentTypeError(f"{key} must be {expected[key]}, got {text.partition('=')[2]!r}")
    return key, value


def add_override(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--override KEY=VALUE``: SETR constructor arguments."""
    parser.add_argument(
        "--override", action="append", type=key_value, default=[], metavar="KEY=VALUE",
        help="SETR constructor argument (JSON value), repeatable: --override embed_dim=32",
    )  # fmt: skip


def add_model_args(parser: argparse.ArgumentParser, exported: bool = False) -> None:
    """The ``model`` group: what network to run, where, how many images at once, in what precision.

    Args:
        parser: the subcommand's parser.
        exported: also offer ``--exported FILE`` (then ``--model`` is optional).
    """
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        required=not exported,
        help="zoo or architecture name (e.g. setr_pup_vitl_cityscapes), or a model folder written by save_pretrained (e.g. runs/train/final)",
    )
    if exported:
        group.add_argument(
            "--exported", metavar="FILE", help="run a file written by `setr export` (.onnx or .pt2) instead of --model"
        )
    group.add_argument(
        "--checkpoint", help="weights: official .pth, mmseg, PaddleViT or setr safetensors, or a save_pretrained folder"
    )
    group.add_argument("--pretrained", action="store_true", help="download the zoo name's released weights")
    add_override(group)
    group.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    group.add_argument(
        "--batch-size", type=int, default=None,
        help="windows (slide) or images (whole) per forward pass (default: 4; on the CPU fewer when one forward's "
        "logits would pass 256 MiB)",
    )  # fmt: skip
    group.add_argument(
        "--precision", choices=PRECISIONS, default="fp32",
        help="fp32 (exact), bf16 (loaded straight into bf16), int8 (CPU: the encoder's Linear layers), "
        "auto (bf16 where the device has native bf16, else fp32)",
    )  # fmt: skip


def add_protocol_args(parser: argparse.ArgumentParser) -> None:
    """The ``test protocol`` group: overrides of the zoo entry's official protocol."""
    group = parser.add_argument_group("test protocol (default: the zoo entry's official protocol)")
    group.add_argument("--mode", choices=("whole", "slide"), help="run the network on whole images or sliding windows")
    group.add_argument("--crop", type=positive_int, help="sliding-window side")
    group.add_argument("--stride", type=positive_int, help="sliding-window stride")
    group.add_argument("--ms-flip", action="store_true", help="multi-scale + flip testing (the official ratios)")
    group.add_argument("--no-flip", action="store_true", help="with --ms-flip: scales only, no flips")
    group.add_argument(
        "--protocol", action="append", type=protocol_field, default=[], metavar="KEY=VALUE",
        help="other protocol fields (JSON value), e.g. test_scale=null, short_side=520, ms_ratios=[1.0,1.5]",
    )  # fmt: skip
