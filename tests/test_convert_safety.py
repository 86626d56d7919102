"""Checkpoint files that are hostile, damaged or for another model: refused, never executed,
and the error says which file, what is wrong and what to do."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import setr
from setr import SETR
from setr.convert import ConversionError, load_checkpoint, read_checkpoint, read_pdparams

from .conftest import TINY, tiny_kwargs


class _CreatesFile:
    """Unpickling this object would create ``path``: code execution, which must never happen."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _model(head: str = "pup") -> SETR:
    return SETR(**tiny_kwargs(head))


def _truncated(path, fraction: float = 0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


@pytest.mark.slow
def test_pth_that_would_run_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": _model().state_dict(), "payload": _CreatesFile(str(marker))}, path)
    with pytest.raises(ConversionError, match=r"evil\.pth: refused to load: unpickling it would call .*open"):
        read_checkpoint(path)
    assert not marker.exists()


@pytest.mark.slow
def test_pdparams_that_would_run_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pdparams"
    with path.open("wb") as file:
        pickle.dump({"w": np.zeros(3, np.float32), "x": _CreatesFile(str(marker))}, file, protocol=4)
    with pytest.raises(ConversionError, match=r"evil\.pdparams: refused to load: refusing to load .*open"):
        read_pdparams(path)
    assert not marker.exists()
    # The same through create_model's single loading path.
    with pytest.raises(ConversionError, match="refused"):
        setr.create_model("setr_pup_vitl_cityscapes.paddlevit_80k", checkpoint_path=path, **TINY)
    assert not marker.exists()


def test_pdparams_with_an_os_system_reduce_is_refused(tmp_path):
    # A classic payload, hand-written: GLOBAL os.system + REDUCE. find_class must stop it first.
    marker = tmp_path / "pwned"
    payload = b"cos\nsystem\n(V" + f"touch {marker}".encode() + b"\ntR."
    path = tmp_path / "system.pdparams"
    path.write_bytes(payload)
    with pytest.raises(ConversionError, match=r"refusing to load os\.system"):
        read_pdparams(path)
    assert not marker.exists()


def test_truncated_files_are_named_as_such(tmp_path):
    state = _model().state_dict()
    pth = tmp_path / "cut.pth"
    torch.save({"state_dict": state}, pth)
    legacy = tmp_path / "cut_legacy.pth"
    torch.save({"state_dict": state}, legacy, _use_new_zipfile_serialization=False)
    safetensors = tmp_path / "cut.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(safetensors))
    pdparams = tmp_path / "cut.pdparams"
    with pdparams.open("wb") as file:
        pickle.dump({k: v.numpy() for k, v in state.items()}, file, protocol=4)
    for path in (pth, legacy, safetensors, pdparams):
        _truncated(path)
        with pytest.raises(ConversionError, match=rf"{path.name}: .*truncated"):
            read_checkpoint(path)


def test_random_bytes_are_not_a_checkpoint(tmp_path):
    path = tmp_path / "noise.pth"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(ConversionError, match=r"noise\.pth: cannot read the file .*not a PyTorch checkpoint"):
        read_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        setr.create_model("setr_pup_vitl", checkpoint_path=tmp_path / "nope.pth", **TINY)


def test_wrong_architecture_lists_keys_and_says_what_to_check(tmp_path):
    path = tmp_path / "pup.safetensors"
    save_file({k: v.contiguous() for k, v in _model("pup").state_dict().items()}, str(path))
    with pytest.raises(ConversionError) as info:
        load_checkpoint(_model("mla"), path)
    message = str(info.value)
    assert "pup.safetensors" in message and "missing from the checkpoint: " in message
    assert "missing from the checkpoint: decode_head.branches" in message
    assert (
        "not in the model: aux_heads.0.classifier.bias, aux_heads.0.convs.0.bn.*" in message
        and "Check that the model name" in message
    )


def test_wrong_class_count_says_classes(tmp_path):
    path = tmp_path / "nineteen.safetensors"
    save_file({k: v.contiguous() for k, v in _model("naive").state_dict().items()}, str(path))
    with pytest.raises(ConversionError, match=r"has 19 classes but the model .* has 5 .*shape mismatch"):
        load_checkpoint(SETR(**tiny_kwargs("naive", num_classes=5)), path)


def test_numpy_scalars_in_mmcv_meta_are_data_not_code(tmp_path):
    path = tmp_path / "meta.pth"
    state = _model().state_dict()
    torch.save({"meta": {"seed": np.int64(3), "best_score": np.float64(0.7)}, "state_dict": state}, path)
    assert read_checkpoint(path).keys() == state.keys()


def test_own_safetensors_round_trip(tmp_path):
    source = _model("mla").eval()
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    target = _model("mla").eval()
    assert load_checkpoint(target, path) == "setr"
    x = torch.randn(1, 3, 48, 80)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), atol=0, rtol=0)
