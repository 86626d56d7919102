"""Hostile checkpoints (``tests/hostile_corpus.py``) are refused by every reader, nothing in them
runs, memory stays bounded; and a time-boxed fuzz run of the readers finds only clear refusals."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as safetensors_bytes

import setr
from setr.convert import ConversionError, read_checkpoint
from setr.training import load_training_checkpoint

from .conftest import small
from .hostile_corpus import MARKER_NAME, build_corpus

HERE = Path(__file__).resolve().parent
TINY = small(depth=2, decode_index=1, aux_indices=[0])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[list[Path], Path]:
    folder = tmp_path_factory.mktemp("hostile")
    marker = folder / MARKER_NAME
    return build_corpus(folder, marker), marker


@pytest.mark.slow
def test_the_corpus_covers_the_attacks(corpus):
    files, _ = corpus
    names = {p.stem for p in files}
    assert len(files) >= 20
    for attack in ("global_os_system", "global_builtins_eval", "global_builtins_exec", "global_subprocess",
                   "global_importlib_chain", "stack_global_os_system", "inst_os_system", "obj_os_system",
                   "build_namespace", "persistent_id_global", "numpy_object_array_code", "deeply_nested_lists",
                   "huge_numpy_array", "huge_big_param_table", "huge_storage_record", "header_length_huge"):  # fmt: skip
        assert attack in names
    assert {p.suffix for p in files} == {".pth", ".pt", ".pdparams", ".safetensors"}


def test_every_reader_refuses_every_hostile_file(corpus):
    files, marker = corpus
    for path in files:
        with pytest.raises(ConversionError) as error:
            read_checkpoint(path)
        message = str(error.value)
        assert message.startswith(f"{path}: ") and "\n" not in message, message
        if path.suffix in (".pth", ".pt"):  # training resume reads the same kind of file
            with pytest.raises(RuntimeError, match=rf"{path.name} is not a (readable|setr) training checkpoint"):
                load_training_checkpoint(path)
    assert not marker.exists(), "a payload ran"


@pytest.mark.parametrize(
    "name", ["global_os_system.pdparams", "stack_global_os_system.pth", "huge_numpy_array.pdparams"]
)
def test_create_model_refuses_them_too(corpus, name):
    files, marker = corpus
    path = next(p for p in files if p.name == name)
    with pytest.raises(ConversionError, match=path.name):
        setr.create_model("setr_pup_vitl_cityscapes", checkpoint_path=path, **TINY)
    assert not marker.exists()


@pytest.mark.slow
def test_reading_the_corpus_keeps_memory_bounded(corpus):
    """In a fresh process: the peak memory of reading all of it, over the peak after start-up."""
    files, marker = corpus
    script = (
        "import resource, sys\n"
        "from setr.convert import read_checkpoint\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        read_checkpoint(path)\n"
        "    except Exception:\n"
        "        pass\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, *map(str, files)], capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) < 200, f"{result.stdout.split()[-1]} MiB for files of a few KiB"
    assert not marker.exists()


# --------------------------------------------------------------------------------------- fuzz
def _valid_files() -> dict[str, bytes]:
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.zeros(2)}
    pth = io.BytesIO()
    torch.save({"state_dict": state}, pth)
    pdparams = pickle.dumps({k: v.numpy() for k, v in state.items()}, protocol=2)
    return {".pth": pth.getvalue(), ".pdparams": pdparams, ".safetensors": safetensors_bytes(state)}


VALID = _valid_files()
FUZZ_CRASH_CODEC = b"\x80\x02}q\x00(X\x01\x00\x00\x00wq\x01cnumpy._core.multiarray\n_reconstruct\nq\x02cnumpy\nndarray\nq\x03K\x00\x85q\x04c_codecs\nencode\nq\x05X\x01\x00\x00\x00bq\x06X\x06\x00\x00\x00matin1q\x07\x86q\x08Rq\t\x87q\nRq\x0b(K\x01K\x02K\x03\x86q\x0ccnumpy\ndtype\nq\rX\x02\x00\x00\x00f4q\x0e\x89\x88\x87q\x0fRq\x10(K\x03X\x01\x00\x00\x00<q\x11NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x12b\x89h\x05X\x1b\x00\x00\x00\x00\x00\x00\x00\x00\x00\xc2\x80?\x00\x00\x00@\x00\x00@@\x00\x00\xc2\x80@\x00\x00\xc2\xa0@q\x13h\x07\x86q\x14Rq\x15tq\x16bX\x01\x00\x00\x00bq\x17h\x02h\x03K\x00\x85q\x18h\t\x87q\x19Rq\x1a(K\x01K\x02\x85q\x1bh\x10\x89h\x05X\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00q\x1ch\x07\x86q\x1dRq\x1etq\x1fbu."
"""A mutated ``.pdparams`` that asked ``_codecs.encode`` for the codec ``matin1`` and crashed the
reader with ``LookupError``; kept as a regression case."""

ALLOWED = (ConversionError,)
"""The only exception a reader may raise for a bad file: anything else is a crash."""


@st.composite
def mutated_files(draw) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from(sorted(VALID)))
    data = bytearray(VALID[suffix])
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "replace"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[position] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[position : position + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "replace" and data:
            value = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff", b"\x80"]))
            data[position : position + len(value)] = value
    return suffix, bytes(data)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(mutated_files())
# edge cases picked by hand; a crash a fuzz run finds is added here as an @example(...) regression case
@example((".pdparams", pickle.dumps({"w": np.zeros(3, np.float32), "UnpackBigParamInfor@@": {"w": {}}}, protocol=2)))
@example((".pth", b"PK\x03\x04" + bytes(64)))
@example((".pdparams", FUZZ_CRASH_CODEC))  # found by a fuzz run: a codec name the file chose (LookupError)
@example((".safetensors", b'\x08\x00\x00\x00\x00\x00\x00\x00{"a":1}'))
def test_fuzzed_files_are_refused_cleanly(tmp_path_factory, case):
    suffix, data = case
    path = tmp_path_factory.mktemp("fuzz") / f"case{suffix}"
    path.write_bytes(data)
    try:
        tensors = read_checkpoint(path)
    except ALLOWED as error:
        assert str(error).startswith(f"{path}: ")
    else:
        assert all(isinstance(t, torch.Tensor) for t in tensors.values())
