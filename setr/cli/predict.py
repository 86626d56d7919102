"""``setr predict``: segment image files and folders into palette PNG masks and colour overlays."""

from __future__ import annotations

import argparse
import contextlib
import warnings
from pathlib import Path

import numpy as np
import torch

from ..data.io import ImageReadError, read_image
from ..export import ExportedShapeError
from ..files import atomic_write, check_new_files, check_output_dir
from ..inference import collect_images, mask_to_image, overlay, palette_for
from ..lock import folder_lock
from .arguments import add_model_args, add_protocol_args, fraction, positive_int
from .common import (
    CliError,
    build_predictor,
    check_batch_size,
    choose_device,
    choose_precision,
    load_model,
    new_folder,
    one_line,
    progress,
    report,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``setr predict``."""
    parser = subparsers.add_parser(
        "predict", help="segment images: palette PNG masks and colour overlays",
        description="Segment image files and folders (searched recursively). For each image X the output "
        "folder gets X.png (class indices, palette PNG) and X_overlay.jpg (colours over the image). One run at a "
        "time writes to a folder (a lock file, .setr.lock, holds it while the run goes).",
    )  # fmt: skip
    parser.add_argument("inputs", nargs="+", help="image files or folders")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--alpha", type=fraction, default=0.5, help="overlay opacity of the class colours (0 to 1)")
    parser.add_argument("--no-overlay", action="store_true", help="write the masks only")
    parser.add_argument("--save-probs", action="store_true", help="also write X_probs.npy, (C, H, W) float16")
    parser.add_argument("--max-pixels", type=positive_int, default=None, metavar="N",
                        help="read images of up to N pixels (default: PIL's limit, about 179 million)")  # fmt: skip
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--force", action="store_true", help="replace outputs that already exist in --out")
    existing.add_argument(
        "--skip-existing", action="store_true",
        help="skip the images whose outputs are all in --out already (continue an interrupted run); "
        "an image with only some of them is segmented again",
    )  # fmt: skip
    add_model_args(parser, exported=True)
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="CPU threads of the network (torch.set_num_threads; an OpenVINO IR's "
                        "INFERENCE_NUM_THREADS); default: torch's, one per core")  # fmt: skip
    add_protocol_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Segment every image of ``args.inputs``; 1 when some could not be read."""
    images, missing = collect_images(args.inputs)
    if not images:  # one line: what was missing is the reason
        raise CliError("no images to segment: " + ("; ".join(missing) or "none in " + " ".join(args.inputs)))
    for message in missing:
        report(f"skipped {message}")
    check_batch_size(args)
    device = choose_device(args.device)
    threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)  # the eager network's; an OpenVINO IR takes it too
    try:
        return _run(args, images, missing, device)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace, images, missing, device: torch.device) -> int:
    """:func:`run` past the checks that need no device or precision."""
    precision = choose_precision(args, device)
    # --out is made here, held by this run's lock, and removed again if the run ends with nothing in it
    with new_folder(args.out), contextlib.ExitStack() as held:
        try:  # before the (slow) model load
            check_output_dir(args.out)
            held.enter_context(folder_lock(args.out))
            todo = [(path, stem) for path, stem in images if not (args.skip_existing and _finished(args, stem))]
            if not args.skip_existing:
                check_new_files((f for _, stem in todo for f in _outputs(args, stem).values()), args.force)
        except OSError as error:
            raise CliError(one_line(error)) from None
        skipped = len(images) - len(todo)
        return _segment(args, todo, device, precision, failed=len(missing), skipped=skipped)


def _segment(
    args: argparse.Namespace,
    images: list[tuple[Path, Path]],
    device: torch.device,
    precision: str,
    failed: int,
    skipped: int,
) -> int:
    """Segment ``images`` into ``args.out`` and print the summary line; the exit status."""
    done = 0
    if images:
        with warnings.catch_warnings(record=True) as caught:  # an IR's bf16 fallback: one line, not a trace
            warnings.simplefilter("always", RuntimeWarning)
            model = load_model(args, precision)
        for warning in caught:
            report(f"warning: {warning.message}")
        predictor = build_predictor(args, model, device, precision)
        palette = palette_for(model.num_classes, model.info.palette)
    for path, stem in progress(images, desc="predict", unit="img"):
        try:
            image = read_image(path, max_pixels=args.max_pixels)
            seg = predictor(image, ms_flip=args.ms_flip, return_probs=args.save_probs)
        except ImageReadError as error:
            report(f"skipped {error}")
            failed += 1
            continue
        except (ExportedShapeError, ValueError) as error:  # another size than exported, NaN logits: this image only
            report(f"skipped {path}: {one_line(error)}")
            failed += 1
            continue
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
        done += 1
    summary = f"wrote {done} segmentations to {Path(args.out)}"
    if skipped:
        summary += f"; skipped {skipped} whose outputs were already there (--skip-existing)"
    report(summary + (f"; {failed} inputs failed" if failed else ""))
    return 1 if failed else 0


def _finished(args: argparse.Namespace, stem: Path) -> bool:
    """Whether every output of ``stem`` is already in ``--out`` (``--skip-existing``)."""
    return all(path.is_file() for path in _outputs(args, stem).values())


def _outputs(args: argparse.Namespace, stem: Path) -> dict[str, Path]:
    """The files ``setr predict`` writes for one image: mask, overlay, probabilities."""
    target = Path(args.out) / stem
    files = {"mask": target.with_name(f"{target.name}.png")}
    if not args.no_overlay:
        files["overlay"] = target.with_name(f"{target.name}_overlay.jpg")
    if args.save_probs:
        files["probs"] = target.with_name(f"{target.name}_probs.npy")
    return files
