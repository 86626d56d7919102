"""``setr convert``: a released checkpoint -> a ``save_pretrained`` folder, strictly."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..convert import ConversionError
from ..files import OutputExistsError, WriteFailed
from ..zoo import convert_checkpoint
from .arguments import add_override
from .common import CliError, new_folder, one_line

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``setr convert``."""
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
    add_override(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert ``args.checkpoint`` into the folder ``args.out`` (and push it when asked)."""
    if not Path(args.checkpoint).exists():
        raise CliError(f"{args.checkpoint}: checkpoint not found")
    try:
        with new_folder(args.out):  # a refusal leaves no --out folder behind
            model = convert_checkpoint(
                args.model, args.checkpoint, args.out, push_to_hub=args.push_to_hub, force=args.force,
                **dict(args.override),
            )  # fmt: skip
    except OutputExistsError as error:
        raise CliError(f"--out {args.out}: {one_line(error)}") from None
    except KeyError as error:
        raise CliError(f"--model {args.model}: {one_line(error)}") from None
    except ConversionError as error:
        raise CliError(one_line(error)) from None
    except TypeError as error:
        raise CliError(f"--override: {error}") from None
    except ValueError as error:
        raise CliError(f"--model {args.model}: {one_line(error)}") from None
    except WriteFailed:  # setr.cli.main reports it (status 1: the run failed)
        raise
    except OSError as error:
        raise CliError(f"--out {args.out}: {one_line(error)}") from None
    loaded = model.info.loaded_from or {}
    print(
        f"converted {args.checkpoint} ({loaded['format']} format, sha256 {loaded['sha256'][:12]}...) -> {args.out}"
        + (f" and pushed to {args.push_to_hub}" if args.push_to_hub else "")
    )
    return 0
