"""What the ``setr`` subcommands share at run time: device, precision, model loading, the predictor,
output folders, the progress bar and one-line errors (:class:`CliError`). Their flags are read by
:mod:`setr.cli.arguments`."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch
from tqdm import tqdm

import setr

from ..convert import ConversionError
from ..devices import resolve_device
from ..export import ExportedNetwork, MissingExtraError, load_exported
from ..export.runner import takes_run_precision
from ..fast import resolve_precision, to_precision
from ..inference import Predictor

__all__ = [
    "CliError", "build_predictor", "check_batch_size", "choose_device", "choose_precision", "load_model",
    "new_folder", "one_line", "progress", "report",
]  # fmt: skip

T = TypeVar("T")


class CliError(Exception):
    """A problem to report in one line (``setr: error: ...``) before exiting with status 2."""


def choose_device(name: str | None) -> torch.device:
    """``--device``: the named device, or CUDA when there is one and CPU otherwise."""
    try:
        return resolve_device(name, flag="--device")
    except ValueError as error:
        raise CliError(str(error)) from None


def check_batch_size(args: argparse.Namespace) -> None:
    """``--batch-size`` at least 1, before the model loads."""
    if args.batch_size is not None and args.batch_size < 1:
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
    """``--precision`` for ``device``, checked before the model is loaded (an OpenVINO IR's is
    resolved when it is compiled: bf16 on a CPU without it runs fp32, with a warning)."""
    exported = getattr(args, "exported", None)
    if exported is not None and takes_run_precision(exported):
        if args.precision not in ("fp32", "bf16", "auto"):
            raise CliError(
                f"--precision {args.precision}: an OpenVINO IR runs in fp32, bf16 or auto (int8 is made at export: "
                "setr export --format openvino --precision int8 --calibration DIR)"
            )
        return args.precision
    if exported is not None and args.precision != "fp32":
        raise CliError(
            "--exported FILE runs in the precision it was exported in (an OpenVINO .xml takes --precision): "
            "drop --precision"
        )
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
            if takes_run_precision(exported):
                return load_exported(exported, precision=precision, threads=getattr(args, "threads", None))
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
            precision=None if isinstance(model, ExportedNetwork) else precision,
            mask_dtype=torch.uint8 if model.num_classes <= 256 else torch.int64, **overrides,
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
