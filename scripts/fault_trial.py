"""The fault trial of issue 22: bad inputs and faults while running, each classified.

    python scripts/fault_trial.py            # prints one row per case and the good / acceptable / bad counts

Every case runs ``setr`` the way a user would (``setr.cli.main([...])`` in this process, or the
Python API) on a tiny model in a scratch folder, then is judged:

- **good**: a one-line refusal (``setr: error: ...``, exit status 2 for usage, 1 for a failed run,
  or one exception with a one-line message from the API) that leaves no file or folder that was not
  there before and every file the user had unchanged; or, where the input is valid, the right result;
- **acceptable**: the right outcome with a rough edge (a second line, a warning where a refusal was
  expected) that loses nothing;
- **bad**: a traceback, a silent wrong result, a file lost or overwritten.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import setr
from setr.cli import main

TINY = dict(img_size=32, embed_dim=32, depth=2, num_heads=2, decode_index=1)


def run(*args: str) -> tuple[int, str]:
    """``setr ARGS`` in this process: its exit status and what it printed to stderr."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return code, err.getvalue()


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def refused(code: int, err: str, status: int = 2) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    if "Traceback" in err:
        return "bad"
    if code == status and len(lines) == 1 and lines[0].startswith("setr: error:"):
        return "good"
    return "acceptable" if code != 0 else "bad"


def api_refused(call: Callable[[], object], *errors: type[BaseException]) -> str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call()
    except errors as error:
        return "good" if "\n" not in str(error).strip() else "acceptable"
    except Exception:  # another exception type: the user gets the wrong kind of error
        return "acceptable"
    return "bad"


def cases(root: Path) -> list[tuple[str, Callable[[], str]]]:
    model_dir, images = root / "model", root / "images"
    torch.manual_seed(0)
    model = setr.create_model("setr_pup_vitl_cityscapes", **TINY).eval()
    model.save_pretrained(model_dir)
    images.mkdir()
    Image.new("RGB", (48, 40), (120, 80, 40)).save(images / "a.png")
    Image.new("RGB", (40, 48), (20, 200, 90)).save(images / "b.jpg")
    (root / "notimage.png").write_bytes(b"not an image")
    nan_dir = root / "nan_model"
    model.save_pretrained(nan_dir)
    state = setr.convert.read_checkpoint(nan_dir / "model.safetensors")
    state["decode_head.classifier.bias"][0] = float("nan")
    setr.convert.write_safetensors(state, nan_dir / "model.safetensors")
    out = lambda name: str(root / "out" / name)  # noqa: E731
    pred = ["predict", str(images), "--model", str(model_dir), "--device", "cpu"]
    conv = ["convert", "--model", "setr_pup_vitl_cityscapes", "--checkpoint"]

    def cli(*args: str, status: int = 2, leaves_nothing: str | None = None) -> Callable[[], str]:
        def case() -> str:
            before = snapshot(root)
            code, err = run(*args)
            verdict = refused(code, err, status)
            after = snapshot(root)
            if leaves_nothing is not None and (set(after) - set(before)):
                return "bad" if verdict == "good" else verdict  # a refusal left something behind
            if any(after.get(k) != v for k, v in before.items() if v is not None):
                return "bad"  # a file the user had was changed
            return verdict

        return case

    def ok(*args: str, expect: Callable[[], bool], status: int = 0, names: str | None = None) -> Callable[[], str]:
        """A run that must succeed (or fail only for the inputs it names, with ``status``)."""

        def case() -> str:
            code, err = run(*args)
            if "Traceback" in err or code != status or (names is not None and names not in err):
                return "bad"
            return "good" if expect() else "bad"

        return case

    def rerun(*args: str) -> Callable[[], str]:
        """The same command twice: the second must refuse to replace the first's files."""

        def case() -> str:
            run(*args)
            return cli(*args)()

        return case

    return [
        ("predict: --alpha 1.5", cli(*pred, "--out", out("a1"), "--alpha", "1.5", leaves_nothing="a1")),
        ("predict: --alpha -0.1", cli(*pred, "--out", out("a2"), "--alpha", "-0.1", leaves_nothing="a2")),
        ("predict: --batch-size 0", cli(*pred, "--out", out("b0"), "--batch-size", "0", leaves_nothing="b0")),
        ("predict: --device mps", cli(*pred, "--out", out("d1"), "--device", "mps", leaves_nothing="d1")),
        ("predict: --device cuda:3", cli(*pred, "--out", out("d2"), "--device", "cuda:3", leaves_nothing="d2")),
        ("predict: --device gpu0", cli(*pred, "--out", out("d3"), "--device", "gpu0", leaves_nothing="d3")),
        ("predict: --protocol short_side=0", cli(*pred, "--out", out("p0"), "--protocol", "short_side=0")),
        ("predict: --protocol crop=-1", cli(*pred, "--out", out("p1"), "--protocol", "crop=-1")),
        ("predict: --protocol nosuch=1", cli(*pred, "--out", out("p2"), "--protocol", "nosuch=1")),
        ("predict: --model nosuch", cli("predict", str(images), "--out", out("m0"), "--model", "nosuch")),
        ("predict: --model ./missing", cli("predict", str(images), "--out", out("m1"), "--model", "./missing")),
        (
            "predict: --checkpoint missing.pth",
            cli(*pred[:-4], "--model", "setr_pup_vitl", "--checkpoint", str(root / "missing.pth"), "--out", out("m2")),
        ),  # fmt: skip
        ("predict: NaN weights", cli(*pred[:2], "--model", str(nan_dir), "--out", out("n0"), status=2)),
        ("predict: --out is a file", cli(*pred, "--out", str(images / "a.png"))),
        (
            "predict: no inputs found",
            cli("predict", str(root / "empty_nowhere"), "--model", str(model_dir), "--out", out("e0")),
        ),  # fmt: skip
        (
            "predict: an unreadable file among images",
            ok(
                "predict",
                str(images),
                str(root / "notimage.png"),
                "--model",
                str(model_dir),
                "--out",
                out("u0"),
                expect=lambda: (root / "out" / "u0" / "a.png").is_file(),
                status=1,
                names="notimage.png",
            ),
        ),
        (
            "predict: same stem in two folders",
            ok(
                "predict",
                str(images / "a.png"),
                str(root / "twin" / "a.png"),
                "--model",
                str(model_dir),
                "--out",
                out("t0"),
                expect=lambda: len(list((root / "out" / "t0").rglob("a*.png"))) >= 2,
            ),
        ),
        ("predict: rerun without --force", rerun(*pred, "--out", out("r0"))),
        (
            "predict: --skip-existing rerun",
            ok(*pred, "--out", out("r0"), "--skip-existing", expect=lambda: (root / "out" / "r0" / "a.png").is_file()),
        ),
        (
            "predict: 1x600 strip",
            ok(
                "predict",
                str(root / "strip.png"),
                "--model",
                str(model_dir),
                "--out",
                out("s0"),
                expect=lambda: (root / "out" / "s0" / "strip.png").is_file(),
            ),
        ),
        (
            "eval: --limit 0",
            cli("eval", "--dataset", "folder", "--root", str(root), "--model", str(model_dir), "--limit", "0"),
        ),  # fmt: skip
        (
            "eval: --workers -1",
            cli("eval", "--dataset", "folder", "--root", str(root), "--model", str(model_dir), "--workers", "-1"),
        ),  # fmt: skip
        (
            "eval: --json is a folder",
            cli("eval", "--dataset", "folder", "--root", str(root), "--model", str(model_dir), "--json", str(images)),
        ),  # fmt: skip
        (
            "eval: --root missing",
            cli("eval", "--dataset", "cityscapes", "--root", str(root / "nope"), "--model", str(model_dir)),
        ),  # fmt: skip
        ("eval: unknown dataset", cli("eval", "--dataset", "coco", "--root", str(root), "--model", str(model_dir))),
        (
            "convert: out holds a model",
            cli(
                *conv,
                str(model_dir),
                "--out",
                str(model_dir),
            ),
        ),  # fmt: skip
        (
            "convert: checkpoint missing",
            cli(
                *conv,
                str(root / "missing.pth"),
                "--out",
                out("c1"),
                leaves_nothing="c1",
            ),
        ),
        (
            "convert: NaN checkpoint",
            cli(
                *conv,
                str(nan_dir),
                "--out",
                out("c2"),
                leaves_nothing="c2",
            ),
        ),  # fmt: skip
        (
            "export: --format tflite",
            cli("export", "--model", str(model_dir), "--format", "tflite", "--out", out("x.tflite")),
        ),  # fmt: skip
        ("export: --batch 0", cli("export", "--model", str(model_dir), "--batch", "0", "--out", out("x0.onnx"))),
        ("export: --size 0", cli("export", "--model", str(model_dir), "--size", "0", "--out", out("x1.onnx"))),
        (
            "export: int8 precision",
            cli("export", "--model", str(model_dir), "--precision", "int8", "--out", out("x2.onnx")),
        ),  # fmt: skip
        (
            "api: num_classes=0",
            lambda: api_refused(lambda: setr.create_model("setr_pup_vitl", num_classes=0), ValueError, TypeError),
        ),  # fmt: skip
        (
            "api: num_classes=1",
            lambda: api_refused(lambda: setr.SETR(head="naive", num_classes=1, **TINY), ValueError),
        ),  # fmt: skip
        ("api: reset_classifier(-3)", lambda: api_refused(lambda: model.reset_classifier(-3), ValueError, TypeError)),
        (
            "api: from_pretrained(folder, num_classes=0)",
            lambda: api_refused(lambda: setr.from_pretrained(model_dir, num_classes=0), ValueError, TypeError),
        ),
        ("api: config.json is a list", lambda: _broken_config(root, "[1, 2]")),
        ("api: config.json truncated", lambda: _broken_config(root, '{"head": "pup", "num_cl')),
        ("api: SETRConfig(head='fpn')", lambda: api_refused(lambda: setr.SETRConfig(head="fpn"), ValueError)),
        (
            "api: SETRConfig misspelt field",
            lambda: api_refused(lambda: setr.SETRConfig.from_dict({"hed": "pup"}), TypeError),
        ),  # fmt: skip
        (
            "api: create_model(ade20k, checkpoint_path=cityscapes folder)",
            lambda: api_refused(
                lambda: setr.create_model("setr_pup_vitl_ade20k", checkpoint_path=model_dir), ValueError
            ),
        ),  # fmt: skip
        (
            "api: NaN input to the model",
            lambda: api_refused(lambda: model(torch.full((1, 3, 32, 32), float("nan"))), ValueError),
        ),  # fmt: skip
        ("api: Predictor on a 1x5000 strip", lambda: _strip_segments(model)),
        (
            "api: device='cuda' without CUDA",
            lambda: api_refused(lambda: setr.create_model("setr_pup_vitl", device="cuda", **TINY), ValueError),
        ),
        ("api: strict=False", lambda: api_refused(lambda: setr.from_pretrained(model_dir, strict=False), ValueError)),
        ("predict: --protocol stride=0", cli(*pred, "--out", out("p3"), "--protocol", "stride=0")),
        ("predict: --alpha nan", cli(*pred, "--out", out("a3"), "--alpha", "nan", leaves_nothing="a3")),
        ("predict: --max-pixels 0", cli(*pred, "--out", out("mp"), "--max-pixels", "0", leaves_nothing="mp")),
        (
            "predict: a zero-byte and a truncated PNG among images",
            ok(
                "predict",
                str(images / "a.png"),
                str(root / "empty.png"),
                str(root / "truncated.png"),
                "--model",
                str(model_dir),
                "--out",
                out("z0"),
                status=1,
                names="truncated.png",
                expect=lambda: (root / "out" / "z0" / "a.png").is_file(),
            ),
        ),  # fmt: skip
        (
            "predict: grey+alpha, 16-bit and palette PNGs",
            ok(
                "predict",
                str(root / "odd"),
                "--model",
                str(model_dir),
                "--out",
                out("o0"),
                expect=lambda: len(list((root / "out" / "o0").rglob("*.png"))) == 3,
            ),
        ),  # fmt: skip
        (
            "predict: --exported file that is not an export",
            cli("predict", str(images), "--exported", str(images / "a.png"), "--out", out("x3")),
        ),
        (
            "eval: --batch-size 0",
            cli("eval", "--dataset", "folder", "--root", str(root), "--model", str(model_dir), "--batch-size", "0"),
        ),  # fmt: skip
        ("export: --size 17x0", cli("export", "--model", str(model_dir), "--size", "17x0", "--out", out("x4.onnx"))),
        (
            "convert: --override of an unknown field",
            cli(
                *conv,
                str(model_dir),
                "--out",
                out("c3"),
                "--override",
                "nosuch=1",
                leaves_nothing="c3",
            ),
        ),
        ("api: reset_classifier(1)", lambda: api_refused(lambda: model.reset_classifier(1), ValueError)),
        (
            "api: SETR img_size not a multiple of the patch",
            lambda: api_refused(
                lambda: setr.SETR(head="pup", img_size=60, embed_dim=32, depth=2, num_heads=2), ValueError
            ),
        ),
        (
            "api: from_pretrained on a file",
            lambda: api_refused(lambda: setr.from_pretrained(model_dir / "model.safetensors"), FileNotFoundError),
        ),
        (
            "api: Predictor on an empty 0x10 array",
            lambda: api_refused(lambda: setr.Predictor(model)(np.zeros((0, 10, 3), np.uint8)), ValueError),
        ),
        (
            "api: create_model with out_indices but not features_only",
            lambda: api_refused(lambda: setr.create_model("setr_pup_vitl", out_indices=[1], **TINY), ValueError),
        ),
        (
            "api: SETRConfig aux_indices of a negative block",
            lambda: api_refused(lambda: setr.SETRConfig(head="naive", aux_indices=[-1]), TypeError, ValueError),
        ),
    ]


def _broken_config(root: Path, text: str) -> str:
    folder = root / f"broken_{abs(hash(text))}"
    folder.mkdir()
    (folder / "config.json").write_text(text)
    (folder / "model.safetensors").write_bytes(b"")
    return api_refused(lambda: setr.from_pretrained(folder), ValueError, FileNotFoundError, TypeError, OSError)


def _strip_segments(model: setr.SETR) -> str:
    image = np.full((1, 5000, 3), 128, np.uint8)
    try:
        result = setr.Predictor(model, protocol=dict(mode="whole", test_scale=None, short_side=None))(image)
    except ValueError as error:
        return "good" if "\n" not in str(error) else "acceptable"
    except Exception:
        return "bad"
    mask = getattr(result, "mask", result)
    return "good" if tuple(mask.shape[-2:]) == (1, 5000) else "bad"


def main_trial() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        os.chdir(root)
        (root / "twin").mkdir()
        Image.new("RGB", (30, 30), (5, 5, 5)).save(root / "twin" / "a.png")
        Image.new("RGB", (600, 1), (200, 10, 10)).save(root / "strip.png")
        (root / "empty.png").write_bytes(b"")
        Image.new("RGB", (64, 64), (9, 9, 9)).save(root / "full.png")
        (root / "truncated.png").write_bytes((root / "full.png").read_bytes()[:60])
        (root / "odd").mkdir()
        Image.new("LA", (30, 20), (100, 200)).save(root / "odd" / "la.png")
        Image.fromarray(np.full((20, 30), 40000, np.uint16)).save(root / "odd" / "deep.png")
        Image.new("P", (30, 20), 3).save(root / "odd" / "palette.png")
        counts = {"good": 0, "acceptable": 0, "bad": 0}
        for name, case in cases(root):
            try:
                verdict = case()
            except Exception:  # the trial itself met a traceback: that is the user's experience too
                verdict, name = "bad", f"{name}  ({traceback.format_exc().splitlines()[-1]})"
            counts[verdict] += 1
            print(f"{verdict:11s} {name}")
        print(json.dumps(counts))


if __name__ == "__main__":
    main_trial()
