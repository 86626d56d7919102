"""Low precision: resolving ``auto`` by CPU features, bf16 and int8 logits and masks against fp32,
the Predictor on every precision, loading straight into bf16, the one-tensor-at-a-time reader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import setr
from setr import dtypes
from setr.convert import ConversionError, read_safetensors_as
from setr.dtypes import cpu_features
from setr.fast import Int8DynamicLinear, cpu_has_native_bf16, resolve_precision
from setr.fast.convs import fold_conv_bn

ROOT = Path(__file__).resolve().parents[1]
SETR_COMMAND = str(Path(sys.executable).parent / "setr")
TINY = dict(embed_dim=64, depth=4, num_heads=4, img_size=64, num_classes=5)
TAPS = {"naive": dict(decode_index=3), "pup": dict(decode_index=3), "mla": dict(mla_indices=[0, 1, 2, 3])}
# worst |logit - fp32 logit| / max |fp32 logit| measured on these tiny models: bf16 ~8e-3, int8 ~6e-4
TOLERANCE = {"bf16": 3e-2, "int8": 1e-2}


def tiny(head: str) -> setr.SETR:
    torch.manual_seed(0)
    return setr.create_model(f"setr_{head}_vitl", **TINY, **TAPS[head]).eval()


def images(batch: int = 2, height: int = 64, width: int = 96) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(3))


# ------------------------------------------------------------------------------- resolving
def test_auto_is_bf16_exactly_where_the_cpu_has_native_bf16(monkeypatch):
    native = bool(cpu_features() & {"avx512_bf16", "amx_bf16", "bf16"})
    assert cpu_has_native_bf16() == native
    assert resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    monkeypatch.setattr(dtypes, "cpu_has_native_bf16", lambda: False)  # e.g. an AVX2-only CPU
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"  # asked for explicitly: honoured (emulated)
    assert resolve_precision("auto", "meta") == "fp32"


def test_unknown_precisions_and_int8_off_the_cpu_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="choose one of fp32, bf16, int8, auto"):
        resolve_precision("int4")
    with pytest.raises(ValueError, match="CPU only.*use fp32, bf16"):
        resolve_precision("int8", "cuda")
    with pytest.raises(ValueError, match="choose one of"):
        setr.optimize_for_inference(tiny("pup"), precision="fp16")


# ------------------------------------------------------------------------ logits and masks
@pytest.mark.parametrize("head", ["naive", "pup", "mla"])
@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_each_precision_stays_close_to_fp32_and_agrees_on_the_masks(head, precision):
    model = tiny(head)
    x = images()
    with torch.no_grad():
        reference = model(x)
        fast = setr.optimize_for_inference(model, precision=precision)
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        assert next(fast.parameters()).dtype == dtype
        logits = fast(x.to(dtype)).float()
    error = ((logits - reference).abs().max() / reference.abs().max()).item()
    assert error < TOLERANCE[precision], error
    assert (logits.argmax(1) == reference.argmax(1)).float().mean() >= 0.99
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the user's model is unchanged


def test_int8_quantizes_exactly_the_encoder_linears_and_keeps_the_blocks_plain():
    fast = setr.optimize_for_inference(tiny("pup"), precision="int8")
    quantized = [name for name, m in fast.named_modules() if isinstance(m, Int8DynamicLinear)]
    assert len(quantized) == 4 * TINY["depth"]
    assert all(name.startswith("encoder.blocks.") for name in quantized)
    assert all(type(block).__name__ == "Block" for block in fast.encoder.blocks)  # not the fp32 fused path
    assert all(p.dtype == torch.float32 for p in fast.parameters())


def test_int8_from_a_bf16_model_quantizes_in_place_and_runs_the_rest_in_fp32():
    """What `setr predict --precision int8` does: weights read in bf16, quantized in place."""
    reference = tiny("mla")
    half = tiny("mla").to(torch.bfloat16)
    quantized = setr.fast.to_precision(half, "int8", inplace=True)
    assert quantized is half and not any(isinstance(m, torch.nn.Linear) for m in half.encoder.blocks.modules())
    assert all(p.dtype == torch.float32 for p in half.parameters())
    x = images()
    with torch.no_grad():
        expected, got = reference(x), half(x)
    assert ((got - expected).abs().max() / expected.abs().max()).item() < TOLERANCE["int8"] + TOLERANCE["bf16"]
    assert (got.argmax(1) == expected.argmax(1)).float().mean() >= 0.99


def test_int8_linear_matches_the_float_linear_to_quantization_error():
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 512)
    x = torch.randn(3, 40, 256)
    with torch.no_grad():
        expected, got = linear(x), Int8DynamicLinear(linear)(x)
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert ((got - expected).norm() / expected.norm()).item() < 0.02


def test_bn_folding_in_bf16_is_computed_in_fp32():
    torch.manual_seed(0)
    conv, bn = torch.nn.Conv2d(8, 16, 3), torch.nn.BatchNorm2d(16).eval()
    bn.running_var.uniform_(1e-4, 1e-3)  # small variances: rsqrt in bf16 would lose digits
    weight32, bias32 = fold_conv_bn(conv, bn)
    weight16, bias16 = fold_conv_bn(conv.to(torch.bfloat16), bn.to(torch.bfloat16))
    assert weight16.dtype == bias16.dtype == torch.bfloat16
    assert torch.allclose(weight16.float(), weight32, rtol=1.5e-2, atol=1e-4)
    assert torch.allclose(bias16.float(), bias32, rtol=1.5e-2, atol=1e-3)


# ------------------------------------------------------------------------------ Predictor
@pytest.mark.parametrize("precision", ["bf16", "int8", "auto"])
@pytest.mark.parametrize("optimize", [True, False])
def test_the_predictor_runs_every_precision_with_float32_probabilities(precision, optimize):
    model = tiny("pup")
    image = (torch.rand(3, 80, 120, generator=torch.Generator().manual_seed(5)) * 255).round()
    protocol = dict(mode="slide", crop=64, stride=40, test_scale=None)
    reference = setr.Predictor(model, optimize=optimize, **protocol)(image, return_probs=True)
    predictor = setr.Predictor(model, optimize=optimize, precision=precision, **protocol)
    got = predictor(image, return_probs=True)
    assert got.probs.dtype == torch.float32 and torch.allclose(got.probs.sum(0), torch.ones(80, 120), atol=1e-5)
    assert (got.mask == reference.mask).float().mean() >= 0.99
    assert (got.probs - reference.probs).abs().max() < 0.05
    ms = predictor(image, ms_flip=True, return_probs=True)
    assert ms.probs.dtype == torch.float32 and ms.mask.shape == (80, 120)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_overlapping_bf16_windows_are_merged_in_fp32():
    class Constant(torch.nn.Module):  # bf16 logits of 1 + 2^-8 everywhere: exact in bf16 only once
        def forward(self, x):
            return torch.full((x.shape[0], 2, *x.shape[-2:]), 1 + 2**-7, dtype=torch.bfloat16)

    merged = setr.inference.slide_inference(Constant(), torch.zeros(1, 3, 50, 50, dtype=torch.bfloat16), 32, 6)
    assert merged.dtype == torch.float32 and torch.all(merged == 1 + 2**-7)


# ------------------------------------------------------------------------------ loading
def test_loading_in_bf16_gives_the_fp32_weights_rounded_and_no_meta_tensor(tmp_path):
    model = tiny("mla")
    model.save_pretrained(tmp_path / "m")
    for loaded in (
        setr.create_model(tmp_path / "m", dtype=torch.bfloat16),
        setr.create_model("setr_mla_vitl", checkpoint_path=tmp_path / "m" / "model.safetensors", dtype="bf16",
                          **TINY, **TAPS["mla"]),
        setr.SETR.from_pretrained(tmp_path / "m", dtype=torch.bfloat16),
    ):  # fmt: skip
        state = loaded.state_dict()
        assert not any(t.is_meta for t in state.values())
        for key, value in model.state_dict().items():
            expected = value.to(torch.bfloat16) if value.is_floating_point() else value
            assert state[key].dtype == expected.dtype and torch.equal(state[key], expected), key
    fp32 = setr.create_model(tmp_path / "m")
    assert all(torch.equal(a, b) for a, b in zip(fp32.state_dict().values(), model.state_dict().values()))
    with pytest.raises(TypeError, match="floating-point torch.dtype"):
        setr.create_model(tmp_path / "m", dtype=torch.int8)


@pytest.mark.slow
def test_bf16_loading_never_holds_an_fp32_copy(tmp_path):
    """Peak resident memory of a process loading a 200 MB fp32 model in bf16 (100 MB) stays near
    the bf16 size: neither the fp32 file nor a randomly initialised model is ever held whole."""
    config = dict(embed_dim=512, depth=16, num_heads=8, img_size=64, num_classes=5, decode_index=15)
    torch.manual_seed(0)
    setr.create_model("setr_naive_vitl", **config).save_pretrained(tmp_path / "m")
    script = textwrap.dedent(
        """
        import sys, torch, setr
        def kib(field):
            return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field))
        open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) restarts from here
        base = kib("VmRSS:")
        model = setr.create_model(sys.argv[1], dtype=torch.bfloat16 if sys.argv[2] == "bf16" else None)
        for tensor in model.state_dict().values():  # touch every weight: a lazily mapped file counts too
            tensor.sum()
        weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        print((kib("VmHWM:") - base) / 1024, weights / 2**20)
        """
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    peaks = {}
    for dtype in ("bf16", "fp32"):
        result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "m"), dtype], capture_output=True,
                                text=True, env=env, check=True)  # fmt: skip
        peaks[dtype] = [float(v) for v in result.stdout.split()]
    (bf16_peak, bf16_weights), (fp32_peak, fp32_weights) = peaks["bf16"], peaks["fp32"]
    assert abs(fp32_weights - 2 * bf16_weights) < 1
    assert bf16_peak < bf16_weights + 0.25 * fp32_weights, peaks  # far below the fp32 size
    assert fp32_peak > fp32_weights * 0.9, peaks  # the measurement sees the weights


def test_the_streaming_reader_equals_safetensors_and_refuses_a_damaged_file(tmp_path):
    tensors = {
        "f32": torch.randn(3, 5), "f16": torch.randn(7).half(), "bf16": torch.randn(2, 2).bfloat16(),
        "i64": torch.arange(4), "u8": torch.arange(6, dtype=torch.uint8).reshape(2, 3), "b": torch.tensor([True]),
        "empty": torch.zeros(0, 3),
    }  # fmt: skip
    path = tmp_path / "t.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    kept = read_safetensors_as(path)
    assert all(torch.equal(kept[k], v) and kept[k].dtype == v.dtype for k, v in load_file(str(path)).items())
    as_bf16 = read_safetensors_as(path, torch.bfloat16)
    assert as_bf16["f32"].dtype == torch.bfloat16 and torch.equal(as_bf16["f32"], tensors["f32"].bfloat16())
    assert as_bf16["i64"].dtype == torch.int64 and as_bf16["b"].dtype == torch.bool
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-10])
    with pytest.raises(ConversionError, match="truncated"):
        read_safetensors_as(tmp_path / "cut.safetensors", torch.bfloat16)
    header = b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": 5}}'
    (tmp_path / "odd.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    with pytest.raises(ConversionError, match="tensor 'w' has an unreadable entry"):
        read_safetensors_as(tmp_path / "odd.safetensors", torch.bfloat16)
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ConversionError, match="not a readable safetensors file"):
        setr.convert.read_checkpoint(tmp_path / "junk.safetensors", torch.bfloat16)


# ------------------------------------------------------------------------------------ CLI
@pytest.mark.slow
def test_setr_predict_in_bf16_and_int8_agrees_with_fp32(tmp_path):
    tiny("pup").save_pretrained(tmp_path / "m")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    masks = {}
    for precision in ("fp32", "bf16", "int8"):
        out = tmp_path / precision
        command = [SETR_COMMAND, "predict", str(tmp_path / "a.png"), "--model", str(tmp_path / "m"),
                   "--precision", precision, "--out", str(out), "--device", "cpu"]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
        masks[precision] = np.array(Image.open(out / "a.png"))
    # the precision reached the network (the masks differ a little) and kept the answer (they mostly
    # agree: a random model has many near-tied pixels, so the 99 % bar is the Predictor tests' above)
    for precision in ("bf16", "int8"):
        agreement = (masks[precision] == masks["fp32"]).mean()
        assert 0.95 <= agreement < 1.0, (precision, agreement)
    bad = subprocess.run(
        [SETR_COMMAND, "predict", str(tmp_path / "a.png"), "--model", str(tmp_path / "m"),
         "--precision", "int4", "--out", str(tmp_path / "x")], capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert bad.returncode != 0 and "invalid choice: 'int4'" in bad.stderr
    assert json.loads((tmp_path / "m" / "config.json").read_text())["head"] == "pup"
