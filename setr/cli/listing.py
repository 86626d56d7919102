"""``setr list``: the model zoo, as a table or JSON."""

from __future__ import annotations

import argparse
import fnmatch
import json
from typing import Any

from ..zoo import zoo_rows
from .common import CliError

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``setr list``."""
    parser = subparsers.add_parser("list", help="the model zoo: names, dataset, classes, reported mIoU")
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style filter on the name, e.g. '*ade20k*'")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the zoo entries whose name matches ``args.pattern``."""
    rows = [r for r in zoo_rows() if fnmatch.fnmatch(str(r["name"]), args.pattern)]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        raise CliError(f"no zoo entry matches {args.pattern!r}")
    width = max(len(str(r["name"])) for r in rows) + 10
    print(f"{'name':<{width}} {'dataset':<11} {'classes':>7} {'mIoU':>6} {'ms+flip':>7}")
    for row in rows:
        name = f"{row['name']}{' (default)' if row['default'] else ''}"
        print(
            f"{name:<{width}} {row['dataset']:<11} {row['classes']:>7} {_fmt(row['miou']):>6} {_fmt(row['miou_ms']):>7}"
        )
    return 0


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"
