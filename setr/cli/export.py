"""``setr export``: the plain network as an ONNX file, a ``torch.export`` program or an AOTInductor package."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..export import EXPORT_FORMATS, EXPORT_PRECISIONS, MissingExtraError, check_export_precision, export_model
from ..export.requirements import require
from ..files import WriteFailed, check_new_files, check_output_dir
from ..models import SETR
from .arguments import add_override, positive_int
from .common import CliError, load_model, new_folder, one_line

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``setr export``."""
    parser = subparsers.add_parser(
        "export",
        help="export the network to ONNX, a torch.export program or an AOTInductor package",
        description="Export the plain network (normalised (B, C, H, W) images -> (B, classes, H, W) logits) with "
        "the metadata a runner needs (classes, mean/std, test protocol). Run it with `setr predict --exported FILE` "
        "or setr.Predictor(FILE).",
    )
    parser.add_argument("--format", default="onnx", choices=EXPORT_FORMATS, help="onnx (opset 18), pt2 "
                        "(torch.export.save), aoti (AOTInductor package for this CPU; runs without setr)")  # fmt: skip
    parser.add_argument("--out", required=True, help="output file (.onnx or .pt2)")
    parser.add_argument("--dynamic", action="store_true", help="symbolic batch, height and width (any image size)")
    parser.add_argument("--size", type=_size, help="HxW of the example input and of a static graph (default: the crop)")
    parser.add_argument("--batch", type=positive_int, default=1, help="batch of a static graph (dynamic: any batch)")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.add_argument(
        "--precision", choices=list(EXPORT_PRECISIONS), default="fp32",
        help="the graph's weights and input: fp32, or bf16 (pt2/aoti; loaded straight into bf16)",
    )  # fmt: skip
    group = parser.add_argument_group("model")
    group.add_argument("--model", required=True, help="zoo or architecture name, or a save_pretrained folder")
    group.add_argument("--checkpoint", help="weights: official .pth, mmseg, PaddleViT or setr safetensors, or a folder")
    group.add_argument("--pretrained", action="store_true", help="download the zoo name's released weights")
    add_override(group)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export the model to ``args.out``, every option checked before the model loads."""
    out = Path(args.out)
    expected = ".onnx" if args.format == "onnx" else ".pt2"
    if out.suffix != expected:
        raise CliError(f"--out {out}: --format {args.format} writes a {expected} file")
    with new_folder(out.parent):  # the folder this run makes is removed again if nothing is exported
        model = _export(args, out)
    shape = (
        "dynamic batch, height and width"
        if args.dynamic
        else "static "
        + "x".join(map(str, (args.batch, model.config.in_chans, *(args.size or (model.config.img_size,) * 2))))
    )
    print(f"exported {args.model} ({shape}, {args.precision}) -> {out}")
    return 0


def _export(args: argparse.Namespace, out: Path) -> SETR:
    """Check the output and the options, load the model and export it; the model."""
    try:  # before the (slow) model load
        check_export_precision(args.precision, args.format)
        check_output_dir(out.parent if str(out.parent) else ".", "--out folder")
        check_new_files([out], args.force)
        if args.format == "onnx":
            require("onnx", "ONNX export")
            require("onnxscript", "ONNX export")
    except MissingExtraError as error:
        raise CliError(str(error)) from None
    except ValueError as error:
        raise CliError(f"--precision {args.precision} --format {args.format}: {one_line(error)}") from None
    except OSError as error:
        raise CliError(f"--out {out}: {one_line(error)}") from None
    model = load_model(args, args.precision)
    try:
        export_model(
            model, out, args.format, dynamic=args.dynamic, size=args.size, batch=args.batch, force=args.force,
            precision=args.precision,
        )  # fmt: skip
    except WriteFailed:  # setr.cli.main reports it (status 1: the run failed)
        raise
    except (ValueError, OSError) as error:
        raise CliError(f"export: {one_line(error)}") from None
    return model


def _size(text: str) -> tuple[int, int]:
    """``--size``: ``HxW`` or ``S`` (square) in pixels."""
    height, sep, width = text.lower().partition("x")
    try:
        size = (int(height), int(width)) if sep else (int(height), int(height))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW in pixels (e.g. 512x1024), got {text!r}") from None
    if min(size) < 1:
        raise argparse.ArgumentTypeError(f"sizes are positive, got {text!r}")
    return size
