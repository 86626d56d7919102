"""One word for a dtype (setr.dtypes) and one way to choose a device (setr.devices): every word and
alias, the one-line refusals, ``auto`` following the detected CPU features, the floating cast."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import setr
from setr import dtypes
from setr.devices import available_devices, resolve_device
from setr.dtypes import as_dtype, cast_floating, parse_precision, precision_dtype, precision_word
from setr.export import EXPORT_PRECISIONS, check_export_precision
from setr.fast import PRECISIONS, resolve_precision
from setr.models.hub_mixin import as_dtype as hub_as_dtype
from setr.training import mixed_precision

SPELLINGS = {
    "fp32": ["fp32", "float32", "float", "torch.float32", "FP32", torch.float32],
    "bf16": ["bf16", "bfloat16", "torch.bfloat16", "BFloat16", torch.bfloat16],
    "fp16": ["fp16", "float16", "half", "torch.float16", "torch.half", torch.float16],
    "int8": ["int8"],
    "auto": ["auto", " Auto "],
}


# ---------------------------------------------------------------------------------- the words
@pytest.mark.parametrize("word, spelling", [(w, s) for w, spellings in SPELLINGS.items() for s in spellings])
def test_every_word_and_alias_is_read_as_its_word(word, spelling):
    assert precision_word(spelling) == word
    assert parse_precision(spelling) == word
    if word in dtypes.DTYPES:
        assert as_dtype(spelling) == hub_as_dtype(spelling) == dtypes.DTYPES[word] == precision_dtype(word)


@pytest.mark.parametrize("bad", ["fp8", "int4", "gpu", "", "float64x", torch.int64, 3])
def test_unknown_words_are_refused_in_one_line_naming_the_words(bad):
    with pytest.raises(ValueError, match=r"choose one of fp32, bf16, fp16, int8, auto$") as caught:
        precision_word(bad)
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match=r"choose one of fp32, bf16$"):
        parse_precision(bad, ("fp32", "bf16"))
    with pytest.raises(TypeError, match="expected a floating-point torch.dtype or one of fp32, bf16, fp16"):
        as_dtype(bad)


def test_as_dtype_keeps_what_0_2_took():
    assert as_dtype(None) is None
    assert as_dtype(torch.float64) is torch.float64 and as_dtype("float64") is torch.float64
    for refused in ("int8", "auto", torch.int8):  # a dtype= is one floating dtype
        with pytest.raises(TypeError, match="expected a floating-point"):
            as_dtype(refused)
    with pytest.raises(ValueError, match="resolve it for the device first"):
        precision_dtype("auto")
    assert precision_dtype("int8") == torch.float32  # all but the quantized Linear weights


def test_each_user_keeps_its_own_subset_and_messages():
    assert PRECISIONS == ("fp32", "bf16", "int8", "auto")
    assert EXPORT_PRECISIONS == {"fp32": torch.float32, "bf16": torch.bfloat16}
    assert resolve_precision("bfloat16") == "bf16" and resolve_precision("float32") == "fp32"
    with pytest.raises(ValueError, match="choose one of fp32, bf16, int8, auto"):
        resolve_precision("fp16")
    check_export_precision("float32", "onnx")
    for precision, message in {
        "int8": "int8 cannot be exported",
        "auto": "choose its precision, fp32 or bf16, not auto",
        "fp16": "export takes one of fp32, bf16",
        "nonsense": "export takes one of fp32, bf16",
    }.items():
        with pytest.raises(ValueError, match=message):
            check_export_precision(precision, "pt2")
    with pytest.raises(ValueError, match="no bf16 Conv"):
        check_export_precision("bfloat16", "onnx")
    cpu = torch.device("cpu")
    assert mixed_precision(cpu, "none")[0]._enabled is False
    assert mixed_precision(cpu, "bfloat16")[0].fast_dtype == torch.bfloat16
    autocast, scaler = mixed_precision(cpu, "half")
    assert autocast.fast_dtype == torch.float16 and scaler.is_enabled()
    with pytest.raises(ValueError, match=r"amp='fp32x': choose one of none, bf16, fp16$"):
        mixed_precision(cpu, "fp32x")


# ------------------------------------------------------------------------------- what auto is
def _features(monkeypatch, flags: set[str], avx512_bf16: bool = False, amx: bool = False) -> None:
    monkeypatch.setattr(dtypes, "cpu_features", lambda: frozenset(flags))
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)


@pytest.mark.parametrize(
    "flags, avx512_bf16, amx, expected",
    [
        ({"avx2", "fma"}, False, False, "fp32"),  # an AVX2-only x86 CPU
        ({"avx512f", "avx512_vnni"}, False, False, "fp32"),  # AVX-512 without its bf16 instructions
        ({"avx512f", "avx512_bf16"}, False, False, "bf16"),  # the kernel reports it
        (set(), True, False, "bf16"),  # PyTorch's own probe reports it
        (set(), False, True, "bf16"),  # AMX tiles
        ({"fp", "asimd", "bf16"}, False, False, "bf16"),  # an Arm core with the bf16 extension
    ],
)
def test_auto_follows_the_detected_cpu_features(monkeypatch, flags, avx512_bf16, amx, expected):
    _features(monkeypatch, flags, avx512_bf16, amx)
    assert dtypes.auto_precision("cpu") == expected
    assert resolve_precision("auto", "cpu") == expected
    assert resolve_precision("bf16", "cpu") == "bf16"  # asked for explicitly: honoured either way
    assert resolve_precision("auto", "meta") == "fp32"


def test_the_real_probe_agrees_with_the_kernel_flags():
    native = bool(dtypes.cpu_features() & {"avx512_bf16", "amx_bf16", "bf16"})
    probes = [
        getattr(torch.cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    ]
    assert dtypes.cpu_has_native_bf16() == (native or any(probes))


# ---------------------------------------------------------------------------- the floating cast
def test_cast_floating_keeps_integer_tensors_and_never_changes_shared_ones():
    state = {"w": torch.ones(2), "index": torch.arange(3), "mask": torch.ones(2, dtype=torch.bool)}
    cast = cast_floating(state, torch.bfloat16)
    assert [t.dtype for t in cast.values()] == [torch.bfloat16, torch.int64, torch.bool]
    assert state["w"].dtype == torch.float32 and cast_floating(state, None) is state
    model = nn.BatchNorm1d(2)
    weight = model.weight
    assert cast_floating(model, torch.bfloat16) is model
    assert model.weight.dtype == model.running_mean.dtype == torch.bfloat16
    assert model.num_batches_tracked.dtype == torch.int64 and weight.dtype == torch.float32
    assert model.weight.requires_grad
    tensor = torch.ones(1, dtype=torch.int32)
    assert cast_floating(tensor, torch.float16) is tensor


# ------------------------------------------------------------------------------------ devices
def _no_accelerators(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    if hasattr(torch, "xpu"):
        monkeypatch.setattr(torch.xpu, "is_available", lambda: False)


@pytest.mark.parametrize(
    "asked, message",
    [
        ("cuda", "device='cuda': this machine has no CUDA device; devices here: cpu"),
        ("cuda:0", "device='cuda:0': this machine has no CUDA device; devices here: cpu"),
        ("mps", "device='mps': this machine has no MPS device; devices here: cpu"),
        ("gpu0", "device='gpu0': not a device name (e.g. cpu, cuda, cuda:1, mps); devices here: cpu"),
        ("", "device='': not a device name"),
    ],
)
def test_an_absent_device_is_refused_in_one_line_naming_the_devices_here(monkeypatch, asked, message):
    _no_accelerators(monkeypatch)
    with pytest.raises(ValueError) as caught:
        resolve_device(asked)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_a_gpu_index_past_the_last_one_names_the_gpus_there_are(monkeypatch):
    _no_accelerators(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert available_devices() == ["cpu", "cuda:0"]
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match=r"^--device cuda:7: this machine has 1 CUDA device, numbered from 0; "):
        resolve_device("cuda:7", flag="--device")
    with pytest.raises(ValueError, match=r"devices here: cpu, cuda:0$"):
        resolve_device(torch.device("cuda", 3))
    assert resolve_device(None) == torch.device("cuda")


def test_the_default_and_the_cpu(monkeypatch):
    _no_accelerators(monkeypatch)
    assert resolve_device(None) == resolve_device("cpu") == resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("meta") == torch.device("meta")


def test_create_model_and_the_predictor_refuse_an_absent_device_the_same_way(monkeypatch):
    _no_accelerators(monkeypatch)
    with pytest.raises(ValueError, match="device='cuda:7': this machine has no CUDA device; devices here: cpu"):
        setr.create_model("setr_naive_vitl", embed_dim=32, depth=2, num_heads=2, img_size=32, device="cuda:7")
    model = setr.create_model("setr_naive_vitl", embed_dim=32, depth=2, num_heads=2, img_size=32, decode_index=1)
    with pytest.raises(ValueError, match="device='mps': this machine has no MPS device"):
        setr.Predictor(model, device="mps")
    assert setr.Predictor(model, device="cpu").device == torch.device("cpu")
