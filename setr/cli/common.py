"""What the ``setr`` subcommands share: model and protocol options, device, precision, model
loading, the progress bar and one-line errors (:class:`CliError`)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch
from tqdm import tqdm

import setr

from ..convert import ConversionError
from ..data.meta import EvalProtocol
from ..devices import resolve_device
from ..export import ExportedNetwork, MissingExtraError, load_exported
from ..fast import PRECISIONS, resolve_precision, to_precision
from ..inference import Predictor

__all__ = [
    "CliError", "add_model_args", "add_override", "add_protocol_args", "build_predictor", "check_batch_size",
    "choose_device", "choose_precision", "fraction", "key_value", "load_model", "new_folder", "non_negative_float",
    "non_negative_int", "one_line", "positive_float", "positive_int", "progress", "protocol_field", "report",
]  # fmt: skip

T = TypeVar("T")


class CliError(Exception):
    """A problem to report in one line (``setr: error: ...``) before exiting with status 2."""


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
    group.add_argument("--batch-size", type=int, default=4, help="windows (slide) or images (whole) per forward pass")
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


def choose_device(name: str | None) -> torch.device:
    """``--device``: the named device, or CUDA when there is one and CPU otherwise."""
    try:
        return resolve_device(name, flag="--device")
    except ValueError as error:
        raise CliError(str(error)) from None


def check_batch_size(args: argparse.Namespace) -> None:
    """``--batch-size`` at least 1, before the model loads."""
    if args.batch_size < 1:
        raise CliError(f"--batch-size {args.batch_size}: batch_size must be >= 1")


@contextlib.contextmanager
def new_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Around a command that writes into ``folder``: the folders of its path that did not exist
    before are removed again at the end when they are empty (a refusal, a run that wrote nothing),
    so that nothing is left that was not there before."""
    folder = Path(folder).absolute()
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    try:
        yield folder
    finally:
        for path in created:
            try:
                path.rmdir()
            except OSError:  # not empty (the run wrote something), or gone
                break


def choose_precision(args: argparse.Namespace, device: torch.device) -> str:
    """``--precision`` for ``device``, checked before the model is loaded."""
    if getattr(args, "exported", None) is not None and args.precision != "fp32":
        raise CliError("--exported FILE runs in the precision it was exported in: drop --precision")
    try:
        return resolve_precision(args.precision, device)
    except ValueError as error:
        raise CliError(f"--precision {args.precision}: {one_line(error)}") from None


def load_model(args: argparse.Namespace, precision: str = "fp32") -> setr.SETR | ExportedNetwork:
    """The network the ``model`` options name (``--exported`` or ``--model``), in ``precision``."""
    exported = getattr(args, "exported", None)
    if exported is not None:
        if args.model or args.checkpoint or args.pretrained or args.override:
            raise CliError("--exported FILE brings its own network: drop --model/--checkpoint/--pretrained/--override")
        try:
            return load_exported(exported)
        except MissingExtraError as error:
            raise CliError(str(error)) from None
        except (ValueError, OSError) as error:
            raise CliError(f"--exported {exported}: {one_line(error)}") from None
    if args.model is None:
        raise CliError("give --model NAME|FOLDER or --exported FILE")
    overrides = dict(args.override)
    if args.checkpoint is not None and not Path(args.checkpoint).exists():
        raise CliError(f"{args.checkpoint}: checkpoint not found")
    try:
        # bf16 and int8 read the weights in bf16: no fp32 copy of the model is ever made (int8
        # quantizes its Linear layers from them just below, the rest goes back to fp32)
        dtype = torch.bfloat16 if precision in ("bf16", "int8") else None
        model = setr.create_model(
            args.model, pretrained=args.pretrained, checkpoint_path=args.checkpoint, dtype=dtype, **overrides
        )
    except KeyError as error:
        raise CliError(f"--model {args.model}: {one_line(error)}") from None
    except TypeError as error:
        raise CliError(f"--override {overrides}: {error}") from None
    except ConversionError as error:  # its message names the file
        raise CliError(one_line(error)) from None
    except setr.PretrainedWeightsUnavailable as error:
        raise CliError(one_line(error)) from None
    except (ValueError, OSError) as error:
        raise CliError(f"--model {args.model}: {one_line(error)}") from None
    if args.checkpoint is None and not args.pretrained and setr.is_model(args.model):
        report(f"warning: {args.model} has random weights; pass --checkpoint PATH or --pretrained")
    if precision == "int8":  # in place: the float Linear weights are freed as each layer is quantized
        model = to_precision(model, "int8", inplace=True)
    return model


def build_predictor(
    args: argparse.Namespace, model: setr.SETR | ExportedNetwork, device: torch.device, precision: str = "fp32"
) -> Predictor:
    """A :class:`Predictor` of ``model`` with the ``test protocol`` options applied."""
    overrides = dict(args.protocol)
    for field in ("mode", "crop", "stride"):
        if getattr(args, field) is not None:
            overrides[field] = getattr(args, field)
    try:
        return Predictor(
            model, batch_size=args.batch_size, device=device, flip=not args.no_flip,
            precision=None if isinstance(model, ExportedNetwork) else precision, **overrides,
        )  # fmt: skip
    except (TypeError, ValueError) as error:
        raise CliError(f"protocol: {error}") from None


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line (a ``KeyError``'s without its quotes)."""
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(text.split())


def progress(iterable: Iterable[T], **kwargs: Any) -> Iterable[T]:
    """``iterable`` with a progress bar on stderr."""
    return tqdm(iterable, dynamic_ncols=True, file=sys.stderr, **kwargs)


def report(message: str) -> None:
    """Print ``message`` on stderr without breaking a progress bar."""
    tqdm.write(message, file=sys.stderr)
