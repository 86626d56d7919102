"""What the ``setr`` subcommands share: model and protocol options, device, precision, model
loading, the progress bar and one-line errors (:class:`CliError`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import torch
from tqdm import tqdm

import setr

from ..convert import ConversionError
from ..devices import resolve_device
from ..export import ExportedNetwork, MissingExtraError, load_exported
from ..fast import PRECISIONS, resolve_precision, to_precision
from ..inference import Predictor

__all__ = [
    "CliError", "add_model_args", "add_override", "add_protocol_args", "build_predictor", "choose_device",
    "choose_precision", "key_value", "load_model", "one_line", "progress", "report",
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
    group.add_argument("--crop", type=int, help="sliding-window side")
    group.add_argument("--stride", type=int, help="sliding-window stride")
    group.add_argument("--ms-flip", action="store_true", help="multi-scale + flip testing (the official ratios)")
    group.add_argument("--no-flip", action="store_true", help="with --ms-flip: scales only, no flips")
    group.add_argument(
        "--protocol", action="append", type=key_value, default=[], metavar="KEY=VALUE",
        help="other protocol fields (JSON value), e.g. test_scale=null, short_side=520, ms_ratios=[1.0,1.5]",
    )  # fmt: skip


def choose_device(name: str | None) -> torch.device:
    """``--device``: the named device, or CUDA when there is one and CPU otherwise."""
    try:
        return resolve_device(name, flag="--device")
    except ValueError as error:
        raise CliError(str(error)) from None


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
