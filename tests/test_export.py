"""Export: ONNX, torch.export and AOTInductor with truly dynamic sizes, the runner, the Predictor
on exported files, ``setr export`` / ``setr predict --exported``, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

import setr
from setr.export import ExportedShapeError, MissingExtraError, export_model, load_exported
from setr.files import OutputExistsError
from setr.inference import Predictor

from .conftest import small

TINY = small(depth=4, num_classes=5)
TAPS = {"naive": dict(decode_index=3), "pup": dict(decode_index=3), "mla": dict(mla_indices=[0, 1, 2, 3])}
SIZES = [(2, 50, 70), (1, 33, 47), (1, 128, 160)]  # none is the export size (2, 64, 96); one not a multiple of 16


def tiny(head: str) -> setr.SETR:
    torch.manual_seed(0)
    return setr.create_model(f"setr_{head}_vitl_ade20k", **TINY, **TAPS[head]).eval()


def check_matches_eager(network, model: setr.SETR) -> None:
    for batch, height, width in SIZES:
        x = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(height))
        with torch.no_grad():
            expected = model(x)
            got = network(x)
        assert got.shape == expected.shape == (batch, 5, height, width)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("head", ["naive", "pup", "mla"])
@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_dynamic_exports_run_at_other_sizes_and_batches(head, fmt, tmp_path):
    model = tiny(head)
    path = export_model(model, tmp_path / f"m.{'onnx' if fmt == 'onnx' else 'pt2'}", fmt, dynamic=True,
                        size=(64, 96), batch=2)  # fmt: skip
    network = load_exported(path)
    assert network.dynamic and network.num_classes == 5 and network.info.dataset == "ade20k"
    assert network.info.mean == model.info.mean and network.info.class_names == model.info.class_names
    check_matches_eager(network, model)
    if fmt == "onnx":
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
        assert proto.opset_import[0].version >= 17
        assert any(n.op_type == "LayerNormalization" for n in proto.graph.node)  # one op, not decomposed
        dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
        assert dims[1] == 3 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))


@pytest.mark.slow
def test_a_dynamic_export_with_the_default_batch_is_dynamic_in_the_batch_too(tmp_path):
    model = tiny("naive")
    network = load_exported(export_model(model, tmp_path / "d.onnx", "onnx", dynamic=True))  # batch=1
    assert network.metadata["dtype"] == "float32" and network.input_dtype == torch.float32
    dims = [
        d.dim_param or d.dim_value
        for d in onnx.load(str(tmp_path / "d.onnx")).graph.input[0].type.tensor_type.shape.dim
    ]
    assert isinstance(dims[0], str) and isinstance(dims[2], str) and isinstance(dims[3], str)
    x = torch.randn(3, 3, 40, 56)
    with torch.no_grad():
        torch.testing.assert_close(network(x), model(x), atol=1e-4, rtol=0)
    program = load_exported(export_model(model, tmp_path / "d.pt2", "pt2", dynamic=True))
    with torch.no_grad():
        torch.testing.assert_close(program(x), model(x), atol=1e-4, rtol=0)


@pytest.mark.slow
def test_static_export_takes_its_size_only_and_chunks_batches(tmp_path):
    model = tiny("pup")
    network = load_exported(export_model(model, tmp_path / "s.onnx", "onnx", dynamic=False, batch=2))
    assert not network.dynamic and network.input_shape == (2, 3, 32, 32)
    x = torch.randn(3, 3, 32, 32)  # one full chunk of 2, then one padded
    with torch.no_grad():
        torch.testing.assert_close(network(x), model(x), atol=1e-4, rtol=0)
    with pytest.raises(ExportedShapeError, match="exported for 32x32 images only.*--dynamic"):
        network(torch.randn(1, 3, 48, 32))


@pytest.mark.slow
def test_the_sliding_window_predictor_gives_the_same_masks_on_an_exported_model(tmp_path):
    model = tiny("mla")
    path = export_model(model, tmp_path / "m.pt2", "pt2", dynamic=True, size=(64, 96), batch=2)
    image = torch.randint(0, 256, (3, 45, 77), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    settings = dict(mode="slide", crop=32, stride=21, test_scale=None, batch_size=3)
    eager = Predictor(model, **settings)(image, return_probs=True)
    exported = Predictor(str(path), **settings)(image, return_probs=True)
    assert torch.equal(exported.mask, eager.mask)
    torch.testing.assert_close(exported.probs, eager.probs, atol=1e-5, rtol=0)
    ms = Predictor(str(path), **settings, ms_ratios=[0.75, 1.25])(image, ms_flip=True)
    assert torch.equal(ms.mask, Predictor(model, **settings, ms_ratios=[0.75, 1.25])(image, ms_flip=True).mask)


@pytest.mark.slow
def test_aoti_package_runs_without_importing_setr(tmp_path):
    model = tiny("pup")
    path = export_model(model, tmp_path / "m.pt2", "aoti", dynamic=True, size=(64, 96), batch=2)
    x = torch.randn(2, 3, 50, 70)
    with torch.no_grad():
        torch.save({"x": x, "expected": model(x)}, tmp_path / "io.pt")
    script = f"""
        import json, sys, torch
        runner = torch._inductor.aoti_load_package({str(path)!r})
        io = torch.load({str(tmp_path / "io.pt")!r})
        with torch.no_grad():
            difference = (runner(io["x"]) - io["expected"]).abs().max().item()
        print(json.dumps(dict(difference=difference, setr=any(m.startswith("setr") for m in sys.modules),
                              classes=json.loads(runner.get_metadata()["setr"])["num_classes"])))
    """
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["difference"] < 1e-4 and report["setr"] is False and report["classes"] == 5
    assert load_exported(path).dynamic  # and setr reads it too


@pytest.mark.slow
def test_torch_compile_fullgraph_dynamic_has_no_graph_breaks():
    model = tiny("pup")
    compiled = torch.compile(model, fullgraph=True, dynamic=True, backend="eager")
    for batch, height, width in SIZES[:2]:
        x = torch.randn(batch, 3, height, width)
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), model(x), atol=1e-5, rtol=0)


# --------------------------------------------------------------------------------- bad input
def test_export_refuses_existing_files_optimised_models_and_bad_arguments(tmp_path):
    model = tiny("naive")
    target = tmp_path / "m.onnx"
    target.write_bytes(b"the user's file")
    with pytest.raises(OutputExistsError, match="force"):
        export_model(model, target, "onnx")
    assert target.read_bytes() == b"the user's file"
    with pytest.raises(ValueError, match="plain model"):
        export_model(setr.optimize_for_inference(model), tmp_path / "fast.onnx", "onnx")
    with pytest.raises(ValueError, match="unknown export format"):
        export_model(model, tmp_path / "m.tflite", "tflite")
    with pytest.raises(ValueError, match="batch"):
        export_model(model, tmp_path / "b.pt2", "pt2", batch=0)
    assert not (tmp_path / "fast.onnx").exists() and not list(tmp_path.glob(".setr-*"))


def test_reading_a_corrupt_or_foreign_file_says_what_it_is(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"\x00not a protobuf" * 10)
    with pytest.raises(ValueError, match="junk.onnx: not a readable ONNX file"):
        load_exported(tmp_path / "junk.onnx")
    foreign = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])]))  # fmt: skip
    onnx.save(foreign, tmp_path / "other.onnx")
    with pytest.raises(ValueError, match="without setr metadata"):
        load_exported(tmp_path / "other.onnx")
    (tmp_path / "junk.pt2").write_bytes(b"PK not really a zip")
    with pytest.raises(ValueError, match="not an exported SETR"):
        load_exported(tmp_path / "junk.pt2")
    with pytest.raises(FileNotFoundError, match="no exported model"):
        load_exported(tmp_path / "none.onnx")


def test_a_missing_extra_names_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if `pip install setr-pytorch` without [export]
    with pytest.raises(MissingExtraError, match=r'pip install "setr-pytorch\[export\]"'):
        export_model(tiny("naive"), tmp_path / "m.onnx", "onnx")
    from setr.cli import main

    assert main(["export", "--model", "setr_naive_vitl", "--out", str(tmp_path / "m.onnx")]) == 2


@pytest.mark.slow
def test_the_command_line_exports_and_predicts_with_the_exported_file(tmp_path, capsys):
    from setr.cli import main

    tiny("pup").save_pretrained(tmp_path / "model")
    out = tmp_path / "m.onnx"
    assert main(["export", "--model", str(tmp_path / "model"), "--format", "onnx", "--dynamic", "--size", "64x96",
                 "--out", str(out)]) == 0  # fmt: skip
    assert "dynamic batch, height and width" in capsys.readouterr().out
    assert main(["export", "--model", str(tmp_path / "model"), "--out", str(out)]) == 2
    assert "pass --force" in capsys.readouterr().err
    Image.fromarray(np.full((40, 60, 3), 128, np.uint8)).save(tmp_path / "x.png")
    common = ["predict", str(tmp_path / "x.png"), "--mode", "slide", "--crop", "32", "--stride", "21"]
    assert main([*common, "--exported", str(out), "--out", str(tmp_path / "a")]) == 0
    assert main([*common, "--model", str(tmp_path / "model"), "--out", str(tmp_path / "b")]) == 0
    assert np.array_equal(
        np.array(Image.open(tmp_path / "a" / "x.png")), np.array(Image.open(tmp_path / "b" / "x.png"))
    )
    assert main([*common, "--exported", str(out), "--model", "setr_pup_vitl", "--out", str(tmp_path / "c")]) == 2
    assert "brings its own network" in capsys.readouterr().err


@pytest.mark.slow
def test_a_bf16_program_takes_any_input_dtype_and_gives_float32_logits_close_to_fp32(tmp_path):
    model = tiny("pup")
    path = export_model(model, tmp_path / "half.pt2", "pt2", dynamic=True, size=(64, 96), precision="bf16")
    assert next(model.parameters()).dtype == torch.float32  # exported from a converted copy
    network = load_exported(path)
    assert network.metadata["dtype"] == "bfloat16" and network.input_dtype == torch.bfloat16
    x = torch.randn(2, 3, 50, 70, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
        reference = model.to(torch.bfloat16)(x.bfloat16()).float()  # the same network run eagerly in bf16
        model.float()
        got = network(x)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    torch.testing.assert_close(got, reference, atol=2e-2 * reference.abs().max().item(), rtol=0)
    assert (got - expected).abs().max() < 3e-2 * expected.abs().max()  # bf16's tolerance of fp32
    assert (got.argmax(1) == reference.argmax(1)).float().mean() >= 0.99
    image = torch.randint(0, 256, (3, 45, 77), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    settings = dict(mode="slide", crop=32, stride=21, test_scale=None)
    seg = Predictor(str(path), **settings)(image, return_probs=True)
    assert seg.probs.dtype == torch.float32
    eager = Predictor(model, **settings, precision="bf16")(image)
    assert (seg.mask == eager.mask).float().mean() >= 0.99


def test_a_bf16_model_exports_in_bf16_by_default_and_other_precisions_are_refused(tmp_path):
    half = tiny("naive").to(torch.bfloat16)
    path = export_model(half, tmp_path / "h.pt2", "pt2", dynamic=False)
    assert load_exported(path).metadata["dtype"] == "bfloat16"
    model = tiny("naive")
    refusals = {
        ("onnx", "bf16"): "ONNX Runtime's CPU provider has no bf16 Conv",
        ("pt2", "int8"): "int8 cannot be exported",
        ("pt2", "auto"): "choose its precision",
        ("pt2", "fp16"): "export takes one of fp32, bf16",
    }
    for (fmt, precision), message in refusals.items():
        with pytest.raises(ValueError, match=message):
            export_model(model, tmp_path / f"x.{'onnx' if fmt == 'onnx' else 'pt2'}", fmt, precision=precision)
    assert not list(tmp_path.glob("x.*"))


@pytest.mark.slow
def test_setr_export_precision_bf16_loads_in_bf16_and_refuses_onnx(tmp_path, capsys):
    from setr.cli import main

    tiny("mla").save_pretrained(tmp_path / "model")
    out = tmp_path / "m.pt2"
    argv = ["export", "--model", str(tmp_path / "model"), "--format", "pt2", "--size", "64x96", "--out", str(out)]
    assert main([*argv, "--precision", "bf16"]) == 0
    assert "bf16) ->" in capsys.readouterr().out
    assert load_exported(out).input_dtype == torch.bfloat16
    assert main([*argv[:4], "onnx", *argv[5:-1], str(tmp_path / "m.onnx"), "--precision", "bf16"]) == 2
    assert "no bf16 Conv" in capsys.readouterr().err and not (tmp_path / "m.onnx").exists()
