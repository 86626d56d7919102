"""OpenVINO: the IR export (dynamic and static, fp32 and int8 through NNCF), its runner in a precision
chosen at compile time, ``setr export --format openvino`` / ``setr predict --exported model.xml``,
and the refusals (missing extra, calibration, a precision the CPU lacks, a failed write).

The conversions take seconds each, so they are ``slow`` and share one dynamic IR; the fast tier
runs the runner and the refusals on a hand-built IR (one 1x1 convolution with setr's metadata)."""

from __future__ import annotations

import errno
import json
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import setr
from setr.cli import main
from setr.dtypes import cpu_has_native_bf16
from setr.export import ExportedShapeError, MissingExtraError, export_metadata, export_model, load_exported
from setr.files import OutputExistsError, WriteFailed
from setr.inference import Predictor

from .conftest import small

ov = pytest.importorskip("openvino")
ROOT = Path(__file__).resolve().parents[1]
SIZES = [(2, 50, 70), (1, 33, 47), (1, 128, 160)]  # none is the export size (2, 64, 96); one not a multiple of 16
BF16_TOLERANCE = 3e-2
"""bf16 logits within this fraction of the largest fp32 logit (bf16 keeps 8 bits of mantissa)."""


def tiny() -> setr.SETR:
    torch.manual_seed(0)
    return setr.create_model("setr_pup_vitl_ade20k", **small(narrow_heads=True, num_classes=5), decode_index=1).eval()


@pytest.fixture(scope="module")
def dynamic_ir(tmp_path_factory) -> tuple[setr.SETR, Path]:
    model = tiny()
    path = tmp_path_factory.mktemp("ir") / "m.xml"
    return model, export_model(model, path, "openvino", dynamic=True, size=(64, 96), batch=2)


def hand_built_ir(path: Path, classes: int = 5) -> torch.nn.Conv2d:
    """An IR of one 1x1 convolution (3 -> ``classes``) with the metadata of a tiny SETR: a network
    the runner and ``setr predict`` take, written in milliseconds. Returns the same convolution."""
    from openvino import opset13 as ops

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, classes, 1, bias=False)
    image = ops.parameter(ov.PartialShape([-1, 3, -1, -1]), ov.Type.f32, name="images")
    logits = ops.convolution(image, ops.constant(conv.weight.detach().numpy()), [1, 1], [0, 0], [0, 0], [1, 1])
    model = ov.Model([logits], [image], "hand")
    metadata = export_metadata(tiny(), "openvino", True, (2, 3, 64, 96))
    model.set_rt_info(json.dumps(metadata), ["setr"])
    ov.save_model(model, str(path), compress_to_fp16=False)
    return conv


def write_images(folder: Path, count: int, size: tuple[int, int] = (40, 60)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


# ----------------------------------------------------------------------- conversions (slow)
@pytest.mark.slow
def test_a_dynamic_ir_runs_at_unseen_sizes_and_batches_as_the_eager_model(dynamic_ir):
    model, path = dynamic_ir
    assert path.is_file() and path.with_suffix(".bin").is_file()
    fp32 = load_exported(path)
    bf16 = load_exported(path, precision="bf16") if cpu_has_native_bf16() else None
    for batch, height, width in SIZES:
        x = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(height))
        with torch.no_grad():
            expected = model(x)
            got = fp32(x)
        assert got.dtype == torch.float32 and got.shape == expected.shape == (batch, 5, height, width)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
        if bf16 is not None:  # skipped only where the CPU has no bf16 (then bf16 runs fp32)
            with torch.no_grad():
                half = bf16(x)
            assert half.dtype == torch.float32 and bf16.precision == "bf16"
            assert (half - expected).abs().max() <= BF16_TOLERANCE * expected.abs().max()


@pytest.mark.slow
def test_the_metadata_round_trips_through_the_runtime_info(dynamic_ir):
    model, path = dynamic_ir
    network = load_exported(path)
    expected = export_metadata(model, "openvino", True, (2, 3, 64, 96))
    assert network.metadata == expected
    assert network.dynamic and network.num_classes == 5 and network.info == model.info
    ir = ov.Core().read_model(str(path))
    assert json.loads(ir.get_rt_info(["setr"]).astype(str)) == expected
    assert [d.is_dynamic for d in ir.inputs[0].get_partial_shape()] == [True, False, True, True]
    assert ir.inputs[0].get_any_name() == "images" and ir.outputs[0].get_any_name() == "logits"
    assert all(op.get_element_type() == ov.Type.f32 for op in ir.get_ordered_ops() if op.get_type_name() == "Constant"
               and op.get_element_type().is_real())  # fmt: skip  # compress_to_fp16=False


@pytest.mark.slow
def test_the_predictor_runs_an_ir_in_the_precision_asked_for(dynamic_ir):
    model, path = dynamic_ir
    image = torch.randint(0, 256, (3, 45, 77), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    settings = dict(mode="slide", crop=32, stride=21, test_scale=None, batch_size=3)
    eager = Predictor(model, **settings)(image, return_probs=True)
    exported = Predictor(str(path), **settings)(image, return_probs=True)
    assert torch.equal(exported.mask, eager.mask) and exported.probs.dtype == torch.float32
    torch.testing.assert_close(exported.probs, eager.probs, atol=1e-5, rtol=0)
    predictor = Predictor(load_exported(path), precision="auto", **settings)  # a twin compiled in it
    assert predictor.model.precision == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert (predictor(image).mask == eager.mask).float().mean() >= 0.99


@pytest.mark.slow
def test_setr_export_a_static_ir_then_setr_predict_with_it(tmp_path, capsys):
    tiny().save_pretrained(tmp_path / "model")
    out = tmp_path / "m.xml"
    assert main(["export", "--model", str(tmp_path / "model"), "--format", "openvino", "--size", "32",
                 "--out", str(out)]) == 0  # fmt: skip
    assert f"(static 1x3x32x32, fp32) -> {out} + m.bin" in capsys.readouterr().out
    write_images(tmp_path / "images", 1)
    common = ["predict", str(tmp_path / "images"), "--mode", "slide", "--crop", "32", "--stride", "21"]
    assert main([*common, "--exported", str(out), "--out", str(tmp_path / "a"), "--threads", "1"]) == 0
    assert main([*common, "--model", str(tmp_path / "model"), "--out", str(tmp_path / "b")]) == 0
    assert np.array_equal(
        np.array(Image.open(tmp_path / "a" / "0.png")), np.array(Image.open(tmp_path / "b" / "0.png"))
    )
    network = load_exported(out)
    assert not network.dynamic and network.input_shape == (1, 3, 32, 32)
    with pytest.raises(ExportedShapeError, match=r"exported for 32x32 images only.*--dynamic") as refused:
        network(torch.randn(1, 3, 48, 32))
    assert "\n" not in str(refused.value)


@pytest.mark.slow
def test_int8_through_nncf_on_a_small_calibration_set_keeps_the_masks(tmp_path, capsys, dynamic_ir):
    model, fp32_path = dynamic_ir
    model.save_pretrained(tmp_path / "model")
    images = write_images(tmp_path / "calibration", 4)
    out = tmp_path / "q.xml"
    assert main(["export", "--model", str(tmp_path / "model"), "--format", "openvino", "--precision", "int8",
                 "--calibration", str(images), "--calibration-size", "8", "--out", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "int8 (NNCF, transformer preset, 8 calibration windows)" in printed and "MatMul (Linear)" in printed
    int8, fp32 = load_exported(out), load_exported(fp32_path)
    assert "int8 weights" in int8.metadata["quantized"] and out.with_suffix(".bin").stat().st_size < (
        fp32_path.with_suffix(".bin").stat().st_size
    )
    x = torch.randn(2, 3, 48, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        agreement = (int8(x).argmax(1) == fp32(x).argmax(1)).float().mean().item()
    assert agreement >= 0.95


@pytest.mark.slow
def test_import_setr_imports_neither_openvino_nor_nncf():
    code = (
        "import sys, setr, setr.export, setr.inference, setr.cli.export, setr.cli.predict; "
        "print(sorted(m for m in ('openvino', 'nncf') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr[-2000:]


# ------------------------------------------------------------- the runner, on a hand-built IR
def test_the_runner_compiles_in_fp32_unless_told_and_takes_threads(tmp_path):
    conv = hand_built_ir(tmp_path / "h.xml")
    network = load_exported(tmp_path / "h.xml", threads=1)
    assert network.precision == "fp32" and network.num_classes == 5
    x = torch.randn(2, 3, 20, 30)
    with torch.no_grad():
        torch.testing.assert_close(network(x), conv(x), atol=1e-5, rtol=0)
    compiled = network.compiled()
    assert compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert str(compiled.get_property("INFERENCE_PRECISION_HINT")) in ("f32", "<Type: 'float32'>")
    with pytest.raises(ValueError, match="made int8 when it is exported"):
        load_exported(tmp_path / "h.xml", precision="int8")
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        load_exported(tmp_path / "h.xml", threads=0)


def test_bf16_on_a_cpu_without_it_falls_back_to_fp32_and_says_so(tmp_path, monkeypatch, capsys):
    hand_built_ir(tmp_path / "h.xml")
    monkeypatch.setattr("setr.export.openvino.cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr("setr.dtypes.cpu_has_native_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="no native bf16.*runs in fp32 instead"):
        network = load_exported(tmp_path / "h.xml", precision="bf16")
    assert network.precision == "fp32"
    assert load_exported(tmp_path / "h.xml", precision="auto").precision == "fp32"
    write_images(tmp_path / "images", 1)
    argv = ["predict", str(tmp_path / "images"), "--exported", str(tmp_path / "h.xml"), "--mode", "whole"]
    assert main([*argv, "--precision", "bf16", "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "warning: precision bf16: this CPU has no native bf16" in err and "Traceback" not in err
    assert main([*argv, "--precision", "int8", "--out", str(tmp_path / "int8")]) == 2
    assert "int8 is made at export" in capsys.readouterr().err


def test_a_missing_extra_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    hand_built_ir(tmp_path / "h.xml")
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if installed without [openvino]
    with pytest.raises(MissingExtraError, match=r'pip install "setr-pytorch\[openvino\]"'):
        export_model(tiny(), tmp_path / "m.xml", "openvino")
    with pytest.raises(MissingExtraError, match=r"setr-pytorch\[openvino\]"):
        load_exported(tmp_path / "h.xml")
    assert main(["export", "--model", "setr_naive_vitl", "--format", "openvino", "--out", str(tmp_path / "m.xml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "setr-pytorch[openvino]"' in err
    assert not (tmp_path / "m.xml").exists()


def test_a_failed_write_leaves_the_old_pair_whole(tmp_path, monkeypatch):
    from setr.export.openvino import write_openvino

    old = tmp_path / "m.xml"
    old.write_text("the user's xml")
    old.with_suffix(".bin").write_bytes(b"the user's bin")
    hand_built_ir(tmp_path / "h.xml")
    hand = ov.Core().read_model(str(tmp_path / "h.xml"))
    monkeypatch.setattr(ov, "convert_model", lambda program: hand)
    real_save = ov.save_model

    def full_disk(model, path, compress_to_fp16=True):
        real_save(model, path, compress_to_fp16=compress_to_fp16)  # the new pair is written whole ...
        raise OSError(errno.ENOSPC, "No space left on device", path)  # ... then the disk fills up

    monkeypatch.setattr(ov, "save_model", full_disk)
    metadata = export_metadata(tiny(), "openvino", True, (2, 3, 64, 96))
    with pytest.raises(WriteFailed):
        write_openvino(None, old, metadata, 3, None)
    assert old.read_text() == "the user's xml" and old.with_suffix(".bin").read_bytes() == b"the user's bin"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.bin", "h.xml", "m.bin", "m.xml"]  # no staging left
    monkeypatch.setattr(ov, "save_model", real_save)
    write_openvino(None, old, metadata, 3, None)  # and a good write replaces both
    assert load_exported(old).num_classes == 5


def test_refusals_before_any_conversion(tmp_path, capsys):
    model = tiny()
    (tmp_path / "m.bin").write_bytes(b"someone's weights")
    with pytest.raises(OutputExistsError, match="force"):
        export_model(model, tmp_path / "m.xml", "openvino")  # the .bin of the pair exists
    assert (tmp_path / "m.bin").read_bytes() == b"someone's weights" and not (tmp_path / "m.xml").exists()
    refusals = [
        ("bf16", None, "keeps fp32 weights and runs in bf16"),
        ("int8", None, "int8 export needs calibration windows"),
        ("fp32", [torch.zeros(1, 3, 32, 32)], "calibration windows are for precision='int8'"),
    ]
    for precision, calibration, message in refusals:
        with pytest.raises(ValueError, match=message):
            export_model(model, tmp_path / "x.xml", "openvino", precision=precision, calibration=calibration)
    with pytest.raises(ValueError, match="int8 cannot be exported.*--format openvino"):
        export_model(model, tmp_path / "x.pt2", "pt2", precision="int8")
    assert not list(tmp_path.glob("x.*"))
    model.save_pretrained(tmp_path / "model")
    export = ["export", "--model", str(tmp_path / "model"), "--format", "openvino", "--out", str(tmp_path / "q.xml")]
    cases = {
        ("--precision", "int8"): "needs --calibration DIR",
        ("--calibration", str(tmp_path)): "--calibration is for --precision int8",
        ("--precision", "int8", "--calibration", str(tmp_path / "none")): "no such file or folder",
        ("--precision", "int8", "--calibration", f"cityscapes:{tmp_path / 'none'}"): "not a folder",
        ("--precision", "bf16"): "runs in bf16 when it is loaded",
    }
    for extra, message in cases.items():
        assert main([*export, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (extra, err)
    assert main([*export[:-1], str(tmp_path / "q.onnx")]) == 2
    assert "writes a .xml file" in capsys.readouterr().err
    assert not (tmp_path / "q.xml").exists()


def test_too_small_a_calibration_set_is_refused_naming_both_counts(tmp_path, capsys):
    tiny().save_pretrained(tmp_path / "model")
    images = write_images(tmp_path / "calibration", 2)
    argv = ["export", "--model", str(tmp_path / "model"), "--format", "openvino", "--precision", "int8",
            "--calibration", str(images), "--out", str(tmp_path / "q.xml")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "calibration windows in 2 images, 300 needed" in err and "--calibration-size" in err
    assert err.count("\n") == 1 and not (tmp_path / "q.xml").exists()
    (images / "broken.png").write_bytes(b"not a png")
    assert main([*argv, "--calibration-size", "2"]) == 2
    assert "broken.png: not a readable image" in capsys.readouterr().err


def test_the_gpu_benchmark_exits_in_one_line_without_cuda(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sys, "argv", ["gpu.py"])
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(ROOT / "benchmarks" / "gpu.py"), run_name="__main__")
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "no CUDA device" in out
