"""The ``setr`` command line: ``setr list``, ``setr predict``, ``setr eval``, ``setr convert``.

Each subcommand is registered by one ``_add_<name>(subparsers)`` function that sets its handler
as ``func``; a handler returns the exit status (0 success, 1 some inputs failed, 2 nothing ran).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

import setr

from .convert import ConversionError
from .data.datasets import DatasetLayoutError, build_dataset
from .data.io import IMAGE_EXTENSIONS, ImageReadError, read_image
from .distributed import DistributedContext, cleanup_distributed, init_distributed
from .export import (
    EXPORT_FORMATS,
    EXPORT_PRECISIONS,
    ExportedNetwork,
    MissingExtraError,
    check_export_precision,
    export_model,
    load_exported,
)
from .export.requirements import require
from .fast import PRECISIONS, resolve_precision, to_precision
from .files import OutputExistsError, atomic_write, check_new_files, check_output_dir
from .inference import Predictor, evaluate, mask_to_image, overlay, palette_for
from .metrics import ConfusionMatrix
from .zoo import convert_checkpoint, zoo_rows

__all__ = ["CliError", "build_parser", "main"]


class CliError(Exception):
    """A problem to report in one line (``setr: error: ...``) before exiting with status 2."""


# ------------------------------------------------------------------------------------ shared
def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _add_override(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--override", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
        help="SETR constructor argument (JSON value), repeatable: --override embed_dim=32",
    )  # fmt: skip


def _add_model_args(parser: argparse.ArgumentParser, exported: bool = False) -> None:
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
    _add_override(group)
    group.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    group.add_argument("--batch-size", type=int, default=4, help="windows (slide) or images (whole) per forward pass")
    group.add_argument(
        "--precision", choices=PRECISIONS, default="fp32",
        help="fp32 (exact), bf16 (loaded straight into bf16), int8 (CPU: the encoder's Linear layers), "
        "auto (bf16 where the device has native bf16, else fp32)",
    )  # fmt: skip


def _add_protocol_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("test protocol (default: the zoo entry's official protocol)")
    group.add_argument("--mode", choices=("whole", "slide"), help="run the network on whole images or sliding windows")
    group.add_argument("--crop", type=int, help="sliding-window side")
    group.add_argument("--stride", type=int, help="sliding-window stride")
    group.add_argument("--ms-flip", action="store_true", help="multi-scale + flip testing (the official ratios)")
    group.add_argument("--no-flip", action="store_true", help="with --ms-flip: scales only, no flips")
    group.add_argument(
        "--protocol", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
        help="other protocol fields (JSON value), e.g. test_scale=null, short_side=520, ms_ratios=[1.0,1.5]",
    )  # fmt: skip


def _device(name: str | None):
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise CliError(f"--device {name}: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CliError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def _resolve_precision(args: argparse.Namespace, device: torch.device) -> str:
    """``--precision`` for ``device``, checked before the model is loaded."""
    if getattr(args, "exported", None) is not None and args.precision != "fp32":
        raise CliError("--exported FILE runs in the precision it was exported in: drop --precision")
    try:
        return resolve_precision(args.precision, device)
    except ValueError as error:
        raise CliError(f"--precision {args.precision}: {_one_line(error)}") from None


def _load_model(args: argparse.Namespace, precision: str = "fp32"):
    exported = getattr(args, "exported", None)
    if exported is not None:
        if args.model or args.checkpoint or args.pretrained or args.override:
            raise CliError("--exported FILE brings its own network: drop --model/--checkpoint/--pretrained/--override")
        try:
            return load_exported(exported)
        except MissingExtraError as error:
            raise CliError(str(error)) from None
        except (ValueError, OSError) as error:
            raise CliError(f"--exported {exported}: {_one_line(error)}") from None
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
        raise CliError(f"--model {args.model}: {_one_line(error)}") from None
    except TypeError as error:
        raise CliError(f"--override {overrides}: {error}") from None
    except ConversionError as error:  # its message names the file
        raise CliError(_one_line(error)) from None
    except setr.PretrainedWeightsUnavailable as error:
        raise CliError(_one_line(error)) from None
    except (ValueError, OSError) as error:
        raise CliError(f"--model {args.model}: {_one_line(error)}") from None
    if args.checkpoint is None and not args.pretrained and setr.is_model(args.model):
        _report(f"warning: {args.model} has random weights; pass --checkpoint PATH or --pretrained")
    if precision == "int8":  # in place: the float Linear weights are freed as each layer is quantized
        model = to_precision(model, "int8", inplace=True)
    return model


def _predictor(args: argparse.Namespace, model, device, precision: str = "fp32"):
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


def _one_line(error: BaseException) -> str:
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(text.split())


def _progress(iterable, **kwargs):
    return tqdm(iterable, dynamic_ncols=True, file=sys.stderr, **kwargs)


def _report(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


# -------------------------------------------------------------------------------------- list
def _add_list(subparsers) -> None:
    parser = subparsers.add_parser("list", help="the model zoo: names, dataset, classes, reported mIoU")
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style filter on the name, e.g. '*ade20k*'")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.set_defaults(func=_run_list)


def _run_list(args: argparse.Namespace) -> int:

    rows = [r for r in zoo_rows() if fnmatch.fnmatch(str(r["name"]), args.pattern)]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        raise CliError(f"no zoo entry matches {args.pattern!r}")

    def fmt(value: Any) -> str:
        return "-" if value is None else f"{value:.2f}"

    width = max(len(str(r["name"])) for r in rows) + 10
    print(f"{'name':<{width}} {'dataset':<11} {'classes':>7} {'mIoU':>6} {'ms+flip':>7}")
    for row in rows:
        name = f"{row['name']}{' (default)' if row['default'] else ''}"
        print(
            f"{name:<{width}} {row['dataset']:<11} {row['classes']:>7} {fmt(row['miou']):>6} {fmt(row['miou_ms']):>7}"
        )
    return 0


# ----------------------------------------------------------------------------------- predict
def _add_predict(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict", help="segment images: palette PNG masks and colour overlays",
        description="Segment image files and folders (searched recursively). For each image X the output "
        "folder gets X.png (class indices, palette PNG) and X_overlay.jpg (colours over the image).",
    )  # fmt: skip
    parser.add_argument("inputs", nargs="+", help="image files or folders")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the class colours")
    parser.add_argument("--no-overlay", action="store_true", help="write the masks only")
    parser.add_argument("--save-probs", action="store_true", help="also write X_probs.npy, (C, H, W) float16")
    parser.add_argument("--force", action="store_true", help="replace outputs that already exist in --out")
    _add_model_args(parser, exported=True)
    _add_protocol_args(parser)
    parser.set_defaults(func=_run_predict)


def _collect_images(inputs: Sequence[str]) -> tuple[list[tuple[Path, Path]], list[str]]:
    """``(image, output stem relative to --out)`` for every input, and the inputs that do not exist."""

    found: list[tuple[Path, Path]] = []
    missing: list[str] = []
    for entry in inputs:
        path = Path(entry)
        if path.is_dir():
            images = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not images:
                missing.append(f"{path}: no images in this folder ({', '.join(IMAGE_EXTENSIONS)})")
            found += [(p, p.relative_to(path).with_suffix("")) for p in images]
        elif path.is_file():
            found.append((path, Path(path.stem)))
        else:
            missing.append(f"{path}: no such file or folder")
    seen: dict[Path, int] = {}
    unique = []
    for image, stem in found:
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        unique.append((image, stem if count == 0 else stem.with_name(f"{stem.name}_{count}")))
    return unique, missing


def _outputs(args: argparse.Namespace, stem: Path) -> dict[str, Path]:
    """The files ``setr predict`` writes for one image: mask, overlay, probabilities."""
    target = Path(args.out) / stem
    files = {"mask": target.with_name(f"{target.name}.png")}
    if not args.no_overlay:
        files["overlay"] = target.with_name(f"{target.name}_overlay.jpg")
    if args.save_probs:
        files["probs"] = target.with_name(f"{target.name}_probs.npy")
    return files


def _run_predict(args: argparse.Namespace) -> int:
    images, missing = _collect_images(args.inputs)
    for message in missing:
        _report(f"skipped {message}")
    if not images:
        raise CliError("no images to segment in " + " ".join(args.inputs))
    try:  # before the (slow) model load
        check_output_dir(args.out)
        check_new_files((f for _, stem in images for f in _outputs(args, stem).values()), args.force)
    except OSError as error:
        raise CliError(_one_line(error)) from None
    device = _device(args.device)
    precision = _resolve_precision(args, device)
    model = _load_model(args, precision)
    predictor = _predictor(args, model, device, precision)
    palette = palette_for(model.num_classes, model.info.palette)
    out = Path(args.out)
    failed = len(missing)
    for path, stem in _progress(images, desc="predict", unit="img"):
        try:
            image = read_image(path)
        except ImageReadError as error:
            _report(f"skipped {error}")
            failed += 1
            continue
        seg = predictor(image, ms_flip=args.ms_flip, return_probs=args.save_probs)
        files = _outputs(args, stem)
        files["mask"].parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(files["mask"]) as handle:
            mask_to_image(seg.mask, palette).save(handle, format="PNG")
        if "overlay" in files:
            with atomic_write(files["overlay"]) as handle:
                overlay(image, seg.mask, palette, args.alpha).save(handle, format="JPEG", quality=90)
        if "probs" in files:
            with atomic_write(files["probs"]) as handle:
                np.save(handle, seg.probs.numpy().astype(np.float16))
    done = len(images) - (failed - len(missing))
    _report(f"wrote {done} segmentations to {out}" + (f"; {failed} inputs failed" if failed else ""))
    return 1 if failed else 0


# -------------------------------------------------------------------------------------- eval
_EVAL_DATASETS = ("cityscapes", "ade20k", "pcontext", "pcontext59", "folder")


def _add_eval(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval", help="mIoU on a dataset with the official protocol",
        description="Evaluate on a dataset in its official layout (see docs/inference.md). Prints the per-class "
        "table and writes it as JSON. Under torchrun the images are split over the processes.",
    )  # fmt: skip
    parser.add_argument("--dataset", required=True, choices=_EVAL_DATASETS, help="pcontext59: the 59-class convention")
    parser.add_argument("--root", required=True, help="dataset folder")
    parser.add_argument("--split", default=None, help="default: val (folder: images/ and masks/ themselves)")
    parser.add_argument("--classes", help="folder dataset: class list file (default ROOT/classes.txt)")
    parser.add_argument("--limit", type=int, help="evaluate the first N images only")
    parser.add_argument("--workers", type=int, default=2, help="image-reading worker processes")
    parser.add_argument("--json", dest="json_path", help="result file (default: ./setr_eval_<model>_<dataset>.json)")
    parser.add_argument("--force", action="store_true", help="replace the result file if it exists")
    _add_model_args(parser)
    _add_protocol_args(parser)
    parser.set_defaults(func=_run_eval)


def _eval_dataset(args: argparse.Namespace, num_classes: int | None = None):
    """The dataset of ``--dataset``; for ``pcontext59`` its labels follow the model (59 or 60 outputs)."""

    name, kwargs = args.dataset, {}
    if name == "pcontext59":
        name = "pcontext"
        kwargs["num_classes"] = 59 if num_classes == 59 else 60
    if name == "folder" and args.classes:
        kwargs["classes"] = args.classes
    try:
        return build_dataset(name, args.root, args.split, **kwargs)
    except (DatasetLayoutError, ValueError) as error:
        raise CliError(f"--dataset {args.dataset}: {_one_line(error)}") from None


def _run_eval(args: argparse.Namespace) -> int:
    try:
        ctx = init_distributed(args.device)
    except (RuntimeError, ValueError) as error:
        raise CliError(f"--device {args.device}: {_one_line(error)}") from None
    try:
        return _evaluate_in_group(args, ctx)
    finally:  # a gloo group left to the interpreter's exit can abort the process after its work
        cleanup_distributed()


def _evaluate_in_group(args: argparse.Namespace, ctx: DistributedContext) -> int:
    dataset = _eval_dataset(args)  # layout and output errors before the (slow) model load
    json_path = _eval_json_path(args)
    try:
        check_output_dir(json_path.parent, "--json")
        check_new_files([json_path], args.force)
    except OSError as error:
        raise CliError(_one_line(error)) from None
    precision = _resolve_precision(args, ctx.device)
    model = _load_model(args, precision)
    if args.dataset == "pcontext59" and model.num_classes == 59:
        dataset = _eval_dataset(args, 59)
    exclude = [0] if args.dataset == "pcontext59" and model.num_classes == 60 else []
    if model.num_classes != dataset.num_classes:
        raise CliError(
            f"--model {args.model} predicts {model.num_classes} classes but --dataset {args.dataset} has "
            f"{dataset.num_classes}; pick the model trained on this dataset"
        )
    predictor = _predictor(args, model, ctx.device, precision)
    metric = ConfusionMatrix(dataset.num_classes, dataset.ignore_index, dataset.class_names, exclude_classes=exclude)
    count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    failed = evaluate(
        predictor, dataset, metric, ctx=ctx, limit=args.limit, ms_flip=args.ms_flip,
        workers=args.workers, skip_errors=True, progress=True,
    )  # fmt: skip
    if ctx.rank != 0:
        return 1 if failed else 0
    result = metric.compute()
    print(metric.table())
    names = [metric.class_names[c] for c in metric.kept_classes]
    report = {
        "model": args.model,
        "checkpoint": args.checkpoint,
        "dataset": args.dataset,
        "root": str(args.root),
        "split": args.split,
        "ms_flip": args.ms_flip,
        "protocol": asdict(predictor.protocol),
        "images": count - len(failed),
        "failed": failed,
        "pixels": int(metric.matrix.sum()),
        **{k: _finite(result[k]) for k in ("mIoU", "mAcc", "aAcc")},
        "per_class": {
            n: {"IoU": _finite(i), "Acc": _finite(a)} for n, i, a in zip(names, result["IoU"], result["Acc"])
        },
    }
    with atomic_write(json_path, "w") as handle:
        handle.write(json.dumps(report, indent=1) + "\n")
    _report(f"wrote {json_path}" + (f"; {len(failed)} images failed and were skipped" if failed else ""))
    return 1 if failed else 0


def _eval_json_path(args: argparse.Namespace) -> Path:
    return Path(args.json_path or f"setr_eval_{Path(args.model).name}_{args.dataset}.json")


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


# ----------------------------------------------------------------------------------- convert
def _add_convert(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a released checkpoint into a save_pretrained folder (safetensors + config + model card)",
        description="Convert an official, mmsegmentation, PaddleViT or setr checkpoint of the network NAME "
        "describes into config.json + model.safetensors + README.md, strictly (every tensor accounted for).",
    )
    parser.add_argument("--model", required=True, help="zoo name with tag, e.g. setr_pup_vitl_cityscapes.official_80k")
    parser.add_argument(
        "--checkpoint", required=True, help="the original checkpoint file (.pth, .pdparams, .safetensors)"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--push-to-hub", metavar="REPO", help="also upload the folder to this Hugging Face Hub repository"
    )
    parser.add_argument("--force", action="store_true", help="replace a model already in --out")
    _add_override(parser)
    parser.set_defaults(func=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    if not Path(args.checkpoint).exists():
        raise CliError(f"{args.checkpoint}: checkpoint not found")
    try:
        model = convert_checkpoint(
            args.model, args.checkpoint, args.out, push_to_hub=args.push_to_hub, force=args.force,
            **dict(args.override),
        )  # fmt: skip
    except OutputExistsError as error:
        raise CliError(f"--out {args.out}: {_one_line(error)}") from None
    except KeyError as error:
        raise CliError(f"--model {args.model}: {_one_line(error)}") from None
    except ConversionError as error:
        raise CliError(_one_line(error)) from None
    except TypeError as error:
        raise CliError(f"--override: {error}") from None
    except ValueError as error:
        raise CliError(f"--model {args.model}: {_one_line(error)}") from None
    except OSError as error:
        raise CliError(f"--out {args.out}: {_one_line(error)}") from None
    loaded = model.info.loaded_from or {}
    print(
        f"converted {args.checkpoint} ({loaded['format']} format, sha256 {loaded['sha256'][:12]}...) -> {args.out}"
        + (f" and pushed to {args.push_to_hub}" if args.push_to_hub else "")
    )
    return 0


# ------------------------------------------------------------------------------------ export
def _size(text: str) -> tuple[int, int]:
    height, sep, width = text.lower().partition("x")
    try:
        size = (int(height), int(width)) if sep else (int(height), int(height))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW in pixels (e.g. 512x1024), got {text!r}") from None
    if min(size) < 1:
        raise argparse.ArgumentTypeError(f"sizes are positive, got {text!r}")
    return size


def _add_export(subparsers) -> None:
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
    parser.add_argument("--batch", type=int, default=1, help="batch of a static graph (dynamic: any batch)")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.add_argument(
        "--precision", choices=list(EXPORT_PRECISIONS), default="fp32",
        help="the graph's weights and input: fp32, or bf16 (pt2/aoti; loaded straight into bf16)",
    )  # fmt: skip
    group = parser.add_argument_group("model")
    group.add_argument("--model", required=True, help="zoo or architecture name, or a save_pretrained folder")
    group.add_argument("--checkpoint", help="weights: official .pth, mmseg, PaddleViT or setr safetensors, or a folder")
    group.add_argument("--pretrained", action="store_true", help="download the zoo name's released weights")
    _add_override(group)
    parser.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    out = Path(args.out)
    expected = ".onnx" if args.format == "onnx" else ".pt2"
    if out.suffix != expected:
        raise CliError(f"--out {out}: --format {args.format} writes a {expected} file")
    if args.batch < 1:
        raise CliError(f"--batch {args.batch}: give a positive batch")
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
        raise CliError(f"--precision {args.precision} --format {args.format}: {_one_line(error)}") from None
    except OSError as error:
        raise CliError(f"--out {out}: {_one_line(error)}") from None
    model = _load_model(args, args.precision)
    try:
        export_model(
            model, out, args.format, dynamic=args.dynamic, size=args.size, batch=args.batch, force=args.force,
            precision=args.precision,
        )  # fmt: skip
    except (ValueError, OSError) as error:
        raise CliError(f"export: {_one_line(error)}") from None
    shape = (
        "dynamic batch, height and width"
        if args.dynamic
        else "static "
        + "x".join(map(str, (args.batch, model.config["in_chans"], *(args.size or (model.config["img_size"],) * 2))))
    )
    print(f"exported {args.model} ({shape}, {args.precision}) -> {out}")
    return 0


# -------------------------------------------------------------------------------------- main
_SUBCOMMANDS: tuple[Callable[[Any], None], ...] = (_add_list, _add_predict, _add_eval, _add_convert, _add_export)


def build_parser() -> argparse.ArgumentParser:
    """The ``setr`` argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="setr", description="SETR semantic segmentation: zoo, inference, evaluation.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in _SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``setr`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as error:
        print(f"setr: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("setr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `setr list | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
