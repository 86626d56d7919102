"""``setr export``: the plain network as an ONNX file, a ``torch.export`` program, an AOTInductor package
or an OpenVINO IR (fp32, or int8 calibrated on the user's images)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.datasets import DATASET_READERS, DatasetLayoutError, build_dataset
from ..export import EXPORT_FORMATS, EXPORT_PRECISIONS, MissingExtraError, check_export_precision, export_model
from ..export.exporter import SUFFIXES
from ..export.requirements import require
from ..files import WriteFailed, check_new_files, check_output_dir
from ..inference import CalibrationError, CalibrationWindows, collect_images
from ..models import SETR
from .arguments import add_override, positive_int
from .common import CliError, load_model, new_folder, one_line, report

CALIBRATION_SIZE = 300
"""Calibration windows by default (NNCF's own default subset): a few hundred crops of the user's images."""

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``setr export``."""
    parser = subparsers.add_parser(
        "export",
        help="export the network to ONNX, a torch.export program, an AOTInductor package or an OpenVINO IR",
        description="Export the plain network (normalised (B, C, H, W) images -> (B, classes, H, W) logits) with "
        "the metadata a runner needs (classes, mean/std, test protocol). Run it with `setr predict --exported FILE` "
        "or setr.Predictor(FILE).",
    )
    parser.add_argument("--format", default="onnx", choices=EXPORT_FORMATS, help="onnx (opset 18), pt2 "
                        "(torch.export.save), aoti (AOTInductor package for this CPU; runs without setr), openvino "
                        "(OpenVINO IR, .xml + .bin; dynamic unless --size)")  # fmt: skip
    parser.add_argument("--out", required=True, help="output file (.onnx, .pt2, or .xml for openvino)")
    parser.add_argument("--dynamic", action="store_true", help="symbolic batch, height and width (any image size; "
                        "openvino: the default without --size)")  # fmt: skip
    parser.add_argument("--size", type=_size, help="HxW of the example input and of a static graph (default: the crop)")
    parser.add_argument("--batch", type=positive_int, default=1, help="batch of a static graph (dynamic: any batch)")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.add_argument(
        "--precision", choices=[*EXPORT_PRECISIONS, "int8"], default="fp32",
        help="the graph's weights and input: fp32, bf16 (pt2/aoti; loaded straight into bf16), or int8 (openvino: "
        "NNCF post-training quantization, needs --calibration; an IR runs in bf16 by `setr predict --precision`)",
    )  # fmt: skip
    parser.add_argument(
        "--calibration", metavar="DIR|DATASET:ROOT",
        help="int8: images to calibrate on, a folder (searched recursively) or image file, or a dataset reader "
        f"and its folder ({', '.join(DATASET_READERS)}; the train split), e.g. cityscapes:data/cityscapes",
    )  # fmt: skip
    parser.add_argument("--calibration-size", type=positive_int, default=CALIBRATION_SIZE, metavar="N",
                        help=f"int8: calibration windows (default {CALIBRATION_SIZE}); fewer found is refused")  # fmt: skip
    group = parser.add_argument_group("model")
    group.add_argument("--model", required=True, help="zoo or architecture name, or a save_pretrained folder")
    group.add_argument("--checkpoint", help="weights: official .pth, mmseg, PaddleViT or setr safetensors, or a folder")
    group.add_argument("--pretrained", action="store_true", help="download the zoo name's released weights")
    add_override(group)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export the model to ``args.out``, every option checked before the model loads."""
    out = Path(args.out)
    expected = SUFFIXES[args.format]
    if out.suffix != expected:
        raise CliError(f"--out {out}: --format {args.format} writes a {expected} file")
    if args.format == "openvino" and args.size is None:
        args.dynamic = True  # an IR is dynamic unless a size is given
    with new_folder(out.parent):  # the folder this run makes is removed again if nothing is exported
        model = _export(args, out)
    shape = (
        "dynamic batch, height and width"
        if args.dynamic
        else "static "
        + "x".join(map(str, (args.batch, model.config.in_chans, *(args.size or (model.config.img_size,) * 2))))
    )
    written = f"{out} + {out.with_suffix('.bin').name}" if args.format == "openvino" else str(out)
    print(f"exported {args.model} ({shape}, {args.precision}) -> {written}")
    if args.format == "openvino" and args.precision == "int8":
        print(f"int8 (NNCF, transformer preset, {args.calibration_size} calibration windows): {_quantized(out)}")
    return 0


def _quantized(out: Path) -> str:
    """What NNCF quantized, as the export wrote it into the IR's metadata."""
    from ..export import load_exported

    return load_exported(out).metadata.get("quantized", "unknown")


def _export(args: argparse.Namespace, out: Path) -> SETR:
    """Check the output and the options, load the model and export it; the model."""
    try:  # before the (slow) model load
        check_export_precision(args.precision, args.format)
        check_output_dir(out.parent if str(out.parent) else ".", "--out folder")
        check_new_files([out, out.with_suffix(".bin")] if args.format == "openvino" else [out], args.force)
        if args.format == "onnx":
            require("onnx", "ONNX export")
            require("onnxscript", "ONNX export")
        if args.format == "openvino":
            require("openvino", "OpenVINO export", "openvino")
            if args.precision == "int8":
                require("nncf", "int8 quantization", "openvino")
        images = _calibration_images(args)
    except MissingExtraError as error:
        raise CliError(str(error)) from None
    except ValueError as error:
        raise CliError(f"--precision {args.precision} --format {args.format}: {one_line(error)}") from None
    except OSError as error:
        raise CliError(f"--out {out}: {one_line(error)}") from None
    model = load_model(args, "fp32" if args.precision == "int8" else args.precision)
    calibration = None
    if images is not None:
        try:  # image headers only: refused before the (slow) conversion
            calibration = CalibrationWindows(images, model, args.calibration_size)
        except CalibrationError as error:
            raise CliError(f"--calibration {args.calibration}: {one_line(error)} (--calibration-size)") from None
        report(f"calibrating on {calibration}")
    try:
        export_model(
            model, out, args.format, dynamic=args.dynamic, size=args.size, batch=args.batch, force=args.force,
            precision=args.precision, calibration=calibration,
        )  # fmt: skip
    except WriteFailed:  # setr.cli.main reports it (status 1: the run failed)
        raise
    except (ValueError, OSError) as error:
        raise CliError(f"export: {one_line(error)}") from None
    return model


def _calibration_images(args: argparse.Namespace) -> list[Path] | None:
    """The image files ``--calibration`` names (int8 only), checked before the model loads."""
    if args.precision != "int8":
        if args.calibration is not None:
            raise CliError("--calibration is for --precision int8 (an OpenVINO int8 export)")
        return None
    if args.calibration is None:
        raise CliError(
            "--precision int8 needs --calibration DIR (a folder of your images) or DATASET:ROOT "
            f"({', '.join(DATASET_READERS)}): NNCF measures activation ranges on them"
        )
    name, sep, root = args.calibration.partition(":")
    if sep and name in DATASET_READERS and not Path(args.calibration).exists():
        try:
            dataset = build_dataset(name, root, None if name == "folder" else "train")
        except (DatasetLayoutError, OSError) as error:
            raise CliError(f"--calibration {args.calibration}: {one_line(error)}") from None
        images = [image for image, _ in dataset.samples]
    else:
        found, missing = collect_images([args.calibration])
        if missing:
            raise CliError(f"--calibration {one_line(ValueError(missing[0]))}")
        images = [image for image, _ in found]
    if not images:
        raise CliError(f"--calibration {args.calibration}: no images in it")
    return images


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
