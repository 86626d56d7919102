"""The ``setr`` command line: ``setr list``, ``predict``, ``eval``, ``convert``, ``export``, ``demo``.

One module per subcommand, each a thin shell over the library: ``add_parser(subparsers)``
registers it and sets its ``run`` as ``func``; ``run`` returns the exit status (0 success, 1 some
inputs failed, 2 nothing ran). What they share is in :mod:`setr.cli.common`. A mistake in the
arguments (an unknown option, a number out of range) is one line, ``setr: error: ...``, status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from ..files import WriteFailed
from . import convert, demo, evaluate, export, listing, predict
from .common import CliError

__all__ = ["CliError", "build_parser", "main"]

_SUBCOMMANDS = (listing, predict, evaluate, convert, export, demo)


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose refusals are one line like every other ``setr`` error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"setr: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``setr`` argument parser with every subcommand registered."""
    parser = _Parser(prog="setr", description="SETR semantic segmentation: zoo, inference, evaluation.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for subcommand in _SUBCOMMANDS:
        subcommand.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``setr`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a refused argument (2), already printed
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return int(args.func(args) or 0)
    except CliError as error:
        print(f"setr: error: {error}", file=sys.stderr)
        return 2
    except WriteFailed as error:  # the disk filled up or turned read-only mid-run: the run failed
        print(f"setr: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("setr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `setr list | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
