"""The code on the pages names what exists: every Python block of README.md and docs/*.md parses,
every ``setr.…`` name and ``from setr… import`` resolves, every keyword argument of a setr call is
one its signature takes, every method called on a model or predictor exists; every ``setr …``
command line parses with the real argument parser, and every flag given to a script is in its
``--help``. A renamed function, parameter, method or flag fails here instead of on the reader.

Convention on the pages: ``model`` is a :class:`setr.SETR` and ``predictor`` a
:class:`setr.Predictor` unless a block assigns them otherwise.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import setr
from setr.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)

# What ``**kwargs`` of these callables accept: the model config's fields, the Hub's download
# options, the test protocol's fields.
SETR_ARGS = set(setr.SETRConfig.field_names())
HUB_ARGS = {"revision", "cache_dir", "force_download", "local_files_only", "token", "aux_heads", "dtype", "device"}
PROTOCOL_ARGS = {f.name for f in dataclasses.fields(setr.EvalProtocol)}
EXTRA_KEYWORDS = {
    setr.SETR: SETR_ARGS | {"config"},
    setr.create_model: SETR_ARGS,
    setr.from_pretrained: SETR_ARGS | HUB_ARGS,
    setr.SETR.from_pretrained: SETR_ARGS | HUB_ARGS,
    setr.Predictor: PROTOCOL_ARGS,
    setr.predict: PROTOCOL_ARGS,
}
CONSTRUCTORS = {  # a call to one of these gives an object of that class
    "create_model": setr.SETR, "from_pretrained": setr.SETR, "SETR": setr.SETR,
    "optimize_for_inference": setr.SETR, "Predictor": setr.Predictor,
}  # fmt: skip
DEFAULT_TYPES = {"model": setr.SETR, "predictor": setr.Predictor}


def blocks(language: str) -> list[tuple[str, int, str]]:
    """``(page, block number, code)`` of every fenced block of ``language``."""
    found = []
    for page in PAGES:
        for number, match in enumerate(m for m in FENCE.finditer(page.read_text()) if m.group(1) == language):
            found.append((page.relative_to(ROOT).as_posix(), number, match.group(2)))
    return found


def dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of attributes on a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def resolve_setr(path: str) -> Any:
    """The object ``setr.a.b`` names (importing submodules as needed); AssertionError if none."""
    parts = path.split(".")
    obj: Any = setr
    for index, part in enumerate(parts[1:], start=1):
        if not hasattr(obj, part):
            try:
                obj = importlib.import_module(".".join(parts[: index + 1]))
                continue
            except ImportError:
                raise AssertionError(f"{path}: {'.'.join(parts[:index])} has no {part!r}") from None
        obj = getattr(obj, part)
    return obj


class PageChecker:
    """Walks a page's blocks in order, keeping what names were imported and what variables hold."""

    def __init__(self) -> None:
        self.imported: dict[str, Any] = {}
        self.types: dict[str, type] = dict(DEFAULT_TYPES)

    def check(self, code: str, where: str) -> int:
        tree = ast.parse(code, where)
        checked = 0
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "setr":
                module = resolve_setr(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{where}: from {node.module} import {alias.name}: no such name"
                    self.imported[alias.asname or alias.name] = getattr(module, alias.name)
                    checked += 1
            elif isinstance(node, ast.Attribute) and (dotted(node) or "").startswith("setr."):
                resolve_setr(dotted(node))
                checked += 1
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                checked += self.check_call(node, where)
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                self.remember(node)
        return checked

    def target_of(self, func: ast.AST) -> Any:
        path = dotted(func)
        if path is None:
            return None
        root, _, rest = path.partition(".")
        if root == "setr":
            return resolve_setr(path)
        if root in self.imported:
            obj = self.imported[root]
            for part in rest.split(".") if rest else []:
                obj = getattr(obj, part)
            return obj
        if root in self.types and rest and "." not in rest:
            cls = self.types[root]
            assert hasattr(cls, rest), f"{cls.__name__} has no method {rest!r} (called as {path})"
            return getattr(cls, rest)
        return None

    def check_call(self, call: ast.Call, where: str) -> int:
        target = self.target_of(call.func)
        if target is None or not callable(target):
            return 0
        try:
            parameters = inspect.signature(target).parameters
        except (TypeError, ValueError):
            return 0
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        allowed = set(parameters) | EXTRA_KEYWORDS.get(target, set())
        for keyword in call.keywords:
            if keyword.arg is None or (takes_any and target not in EXTRA_KEYWORDS):
                continue
            assert keyword.arg in allowed, (
                f"{where}: {dotted(call.func)}(..., {keyword.arg}=...) but it takes {sorted(allowed)}"
            )
        return 1

    def remember(self, assign: ast.Assign) -> None:
        func = assign.value.func
        path = dotted(func) or ""
        name, root = path.rsplit(".", 1)[-1], path.split(".", 1)[0]
        features = any(k.arg == "features_only" for k in assign.value.keywords)
        kind = setr.models.SETRBackbone if features else CONSTRUCTORS.get(name)
        if root not in ("setr", name, *self.imported):  # another library's from_pretrained
            kind = None
        for target in assign.targets:
            if isinstance(target, ast.Name):
                if kind is not None:
                    self.types[target.id] = kind
                elif target.id not in DEFAULT_TYPES:
                    self.types.pop(target.id, None)


@pytest.mark.parametrize("page", [p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_python_block_names_what_exists(page):
    checker = PageChecker()
    page_blocks = [(number, code) for name, number, code in blocks("python") if name == page]
    checked = sum(checker.check(code, f"{page} block {number}") for number, code in page_blocks)
    assert checked > 0 or not page_blocks, f"{page}: nothing checked in {len(page_blocks)} blocks"


def command_lines(prefix: str) -> list[tuple[str, list[str]]]:
    """Every shell line starting with ``prefix`` in a bash block (continuations joined, comments cut)."""
    lines = []
    for page, number, code in blocks("bash"):
        for line in code.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith(prefix):
                lines.append((f"{page} block {number}", shlex.split(line, comments=True)))
    return lines


def test_every_setr_command_on_the_pages_parses():
    parser = build_parser()
    commands = [(where, argv[1:]) for where, argv in command_lines("setr ")]
    assert len(commands) >= 15
    for where, argv in commands:
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{where}: `setr {' '.join(argv)}` does not parse with today's setr command")


@pytest.mark.slow
def test_every_flag_given_to_a_script_is_in_its_help():
    flags: dict[str, set[str]] = {}
    for _, argv in command_lines("python ") + command_lines("torchrun "):
        scripts = [a for a in argv if a.endswith(".py") and (ROOT / a).is_file()]
        if scripts:
            flags.setdefault(scripts[0], set()).update(a.split("=")[0] for a in argv if a.startswith("--"))
    assert {"examples/train.py", "benchmarks/models.py"} <= set(flags)
    for script, used in flags.items():
        help_text = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, cwd=ROOT,
                                   timeout=120, check=True).stdout  # fmt: skip
        unknown = sorted(f for f in used if not re.search(rf"{re.escape(f)}\b", help_text) and "nproc" not in f)
        assert not unknown, f"{script} --help does not know {unknown}"
