"""``setr eval``: mIoU on a dataset with the official protocol, printed and written as JSON."""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

from ..data.datasets import DatasetLayoutError, SegmentationDataset, build_dataset
from ..distributed import DistributedContext, cleanup_distributed, init_distributed
from ..files import atomic_write, check_new_files, check_output_dir
from ..inference import default_report_path, eval_report, evaluate, pcontext59_classes
from ..metrics import ConfusionMatrix
from .arguments import add_model_args, add_protocol_args, non_negative_int, positive_int
from .common import (
    CliError,
    build_predictor,
    check_batch_size,
    choose_precision,
    load_model,
    new_folder,
    one_line,
    report,
)

__all__ = ["add_parser", "run"]

_DATASETS = ("cityscapes", "ade20k", "pcontext", "pcontext59", "folder")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``setr eval``."""
    parser = subparsers.add_parser(
        "eval", help="mIoU on a dataset with the official protocol",
        description="Evaluate on a dataset in its official layout (see docs/inference.md). Prints the per-class "
        "table and writes it as JSON. Under torchrun the images are split over the processes.",
    )  # fmt: skip
    parser.add_argument("--dataset", required=True, choices=_DATASETS, help="pcontext59: the 59-class convention")
    parser.add_argument("--root", required=True, help="dataset folder")
    parser.add_argument("--split", default=None, help="default: val (folder: images/ and masks/ themselves)")
    parser.add_argument("--classes", help="folder dataset: class list file (default ROOT/classes.txt)")
    parser.add_argument("--limit", type=positive_int, help="evaluate the first N images only")
    parser.add_argument("--workers", type=non_negative_int, default=2, help="image-reading worker processes (0: none)")
    parser.add_argument("--json", dest="json_path", help="result file (default: ./setr_eval_<model>_<dataset>.json)")
    parser.add_argument("--force", action="store_true", help="replace the result file if it exists")
    add_model_args(parser)
    add_protocol_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate in this process's group (one process, or this rank under torchrun)."""
    try:
        ctx = init_distributed(args.device)
    except (RuntimeError, ValueError) as error:
        raise CliError(one_line(error)) from None
    try:
        return _evaluate_in_group(args, ctx)
    finally:  # a gloo group left to the interpreter's exit can abort the process after its work
        cleanup_distributed()


def _dataset(args: argparse.Namespace, model_classes: int | None = None) -> SegmentationDataset:
    """The dataset of ``--dataset``; for ``pcontext59`` its labels follow the model (59 or 60 outputs)."""
    name, kwargs = args.dataset, {}
    if name == "pcontext59":
        name = "pcontext"
        kwargs["num_classes"], _ = pcontext59_classes(model_classes)
    if name == "folder" and args.classes:
        kwargs["classes"] = args.classes
    try:
        return build_dataset(name, args.root, args.split, **kwargs)
    except (DatasetLayoutError, ValueError) as error:
        raise CliError(f"--dataset {args.dataset}: {one_line(error)}") from None


def _evaluate_in_group(args: argparse.Namespace, ctx: DistributedContext) -> int:
    dataset = _dataset(args)  # layout and output errors before the (slow) model load
    json_path = Path(args.json_path or default_report_path(args.model, args.dataset))
    if json_path.is_dir():
        raise CliError(f"--json {json_path} is a folder: give the result file's name, e.g. {json_path / 'eval.json'}")
    check_batch_size(args)
    # the result's folder is made here and removed again if the run ends without writing the result
    with new_folder(json_path.parent) if ctx.rank == 0 else contextlib.nullcontext():  # rank 0 writes it
        try:
            check_output_dir(json_path.parent, "--json")
            check_new_files([json_path], args.force)
        except OSError as error:
            raise CliError(one_line(error)) from None
        return _evaluate(args, ctx, dataset, json_path)


def _evaluate(args: argparse.Namespace, ctx: DistributedContext, dataset: SegmentationDataset, json_path: Path) -> int:
    precision = choose_precision(args, ctx.device)
    model = load_model(args, precision)
    exclude: list[int] = []
    if args.dataset == "pcontext59":
        num_classes, exclude = pcontext59_classes(model.num_classes)
        if num_classes != dataset.num_classes:
            dataset = _dataset(args, model.num_classes)
    if model.num_classes != dataset.num_classes:
        raise CliError(
            f"--model {args.model} predicts {model.num_classes} classes but --dataset {args.dataset} has "
            f"{dataset.num_classes}; pick the model trained on this dataset"
        )
    predictor = build_predictor(args, model, ctx.device, precision)
    metric = ConfusionMatrix(dataset.num_classes, dataset.ignore_index, dataset.class_names, exclude_classes=exclude)
    failed = evaluate(
        predictor, dataset, metric, ctx=ctx, limit=args.limit, ms_flip=args.ms_flip,
        workers=args.workers, skip_errors=True, progress=True,
    )  # fmt: skip
    if ctx.rank != 0:
        return 1 if failed else 0
    print(metric.table())  # not eval_table(result): that needs distinct class names, a class list may repeat one
    result = eval_report(
        metric, failed, attempted=len(dataset) if args.limit is None else min(args.limit, len(dataset)),
        protocol=predictor.protocol, model=args.model, checkpoint=args.checkpoint, dataset=args.dataset,
        root=args.root, split=args.split, ms_flip=args.ms_flip,
    )  # fmt: skip
    with atomic_write(json_path, "w") as handle:
        handle.write(json.dumps(result, indent=1) + "\n")
    report(f"wrote {json_path}" + (f"; {len(failed)} images failed and were skipped" if failed else ""))
    return 1 if failed else 0
