"""A corpus of hostile checkpoint files, for the reader tests (``tests/test_hostile_checkpoints.py``).

    python tests/hostile_corpus.py OUT_DIR      # write the corpus there and list it

Each file tries to make a reader run code (create a marker file), allocate far more memory than the
file holds, or recurse without end. Every ``.pth`` payload is a real ``torch.save`` zip archive
whose ``data.pkl`` was replaced, so ``torch.load`` gets past the archive checks to the pickle.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

MARKER_NAME = "pwned"


class _RunsOnLoad:
    """Unpickling this object would call ``function(*args)`` (``__reduce__``): protocol 4 writes
    it with ``STACK_GLOBAL``."""

    def __init__(self, function, *args) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _touch(marker: Path) -> str:
    return f"touch {marker}"


def pickle_payloads(marker: Path) -> dict[str, bytes]:
    """``name -> pickle bytes``: each would create ``marker`` (or run code) if unpickled freely."""
    touch = _touch(marker).encode()
    path = str(marker).encode()
    return {
        # GLOBAL + REDUCE, protocol 0, hand-written
        "global_os_system": b"cos\nsystem\n(V" + touch + b"\ntR.",
        "global_builtins_eval": b"cbuiltins\neval\n(V__import__('os').system('" + touch + b"')\ntR.",
        "global_builtins_exec": b"cbuiltins\nexec\n(Vimport os; os.system('" + touch + b"')\ntR.",
        "global_subprocess": b"csubprocess\ncheck_call\n((lVtouch\naV" + path + b"\natR.",
        "global_importlib_chain": (
            b"cbuiltins\ngetattr\n(cimportlib\nimport_module\n(Vos\ntRVsystem\ntR(V" + touch + b"\ntR."
        ),
        "global_builtins_open": b"cbuiltins\nopen\n(V" + path + b"\nVw\ntR.",
        # STACK_GLOBAL (protocol 4), written by pickle itself
        "stack_global_os_system": pickle.dumps(_RunsOnLoad(os.system, _touch(marker)), protocol=4),
        "stack_global_exec": pickle.dumps(_RunsOnLoad(exec, f"open({str(marker)!r}, 'w')"), protocol=4),
        # INST and OBJ call a class (or any callable) with arguments
        "inst_os_system": b"(V" + touch + b"\nios\nsystem\n.",
        "obj_os_system": b"(cos\nsystem\nV" + touch + b"\no.",
        # BUILD on an object of a class that is not weights
        "build_namespace": b"cargparse\nNamespace\n)R}Vx\nK\x01sb.",
        # persistent ids: a bare string, and a tuple that carries a callable
        "persistent_id_string": b"P" + touch + b"\n.",
        "persistent_id_global": b"(Vstorage\ncos\nsystem\nV0\nVcpu\nK\x01tQ.",
        # numpy object arrays: their elements are pickled objects
        "numpy_object_array_code": pickle.dumps(
            {"w": np.array([_RunsOnLoad(os.system, _touch(marker))], dtype=object)}, protocol=2
        ),
        "numpy_object_array_plain": pickle.dumps({"w": np.array([1, "a", None], dtype=object)}, protocol=2),
        # nesting far deeper than Python's recursion limit: ] ] ] ... a a a
        "deeply_nested_lists": b"]" * 100_000 + b"a" * 99_999 + b".",
        "deeply_nested_dicts": b"}" + b"(V\n}" * 50_000 + b"u" * 50_000 + b".",
        # an array declaring ~400 GB with 16 bytes of data
        "huge_numpy_array": _huge_numpy_array(),
        # paddle's split-array table claiming a 100 GB original shape
        "huge_big_param_table": pickle.dumps(
            {
                "w@@.0": np.zeros(4, np.float32),
                "UnpackBigParamInfor@@": {"w": {"OriginShape": [25_000_000_000], "slices": ["w@@.0"]}},
            },
            protocol=2,
        ),
    }


def _huge_numpy_array() -> bytes:
    """A pickled 4-element float32 array whose shape was edited to 10^11 elements."""
    small = pickle.dumps({"w": np.zeros(4, np.float32)}, protocol=2)
    assert small.count(b"K\x04\x85") == 1
    return small.replace(b"K\x04\x85", b"\x8a\x05" + (10**11).to_bytes(5, "little") + b"\x85")


def torch_zip(payload: bytes) -> bytes:
    """A ``torch.save`` zip archive whose pickle is ``payload``."""
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(4)}, buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for info in source.infolist():
            data = payload if info.filename.endswith("data.pkl") else source.read(info.filename)
            archive.writestr(info, data)
    return out.getvalue()


def huge_storage_pth() -> bytes:
    """A real archive whose tensor declares 10^11 elements backed by a 16-byte record."""
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(4)}, buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename.endswith("data.pkl"):
                data = data.replace(b"K\x04tq\x07Q", b"\x8a\x05" + (10**11).to_bytes(5, "little") + b"tq\x07Q")
            archive.writestr(info, data)
    return out.getvalue()


def _safetensors(header: bytes, data: bytes = b"", length: int | None = None) -> bytes:
    return struct.pack("<Q", len(header) if length is None else length) + header + data


def safetensors_payloads() -> dict[str, bytes]:
    """``name -> bytes`` of ``.safetensors`` files with lying or broken headers."""

    def header(entry: dict) -> bytes:
        return json.dumps({"w": entry}).encode()

    return {
        "header_length_huge": _safetensors(b"{}", length=2**62),
        "tensor_beyond_file": _safetensors(
            header({"dtype": "F32", "shape": [10**10], "data_offsets": [0, 4 * 10**10]})
        ),
        "offsets_overlap": _safetensors(
            json.dumps(
                {
                    "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
                }
            ).encode(),
            bytes(12),
        ),  # fmt: skip
        "unknown_dtype": _safetensors(header({"dtype": "Q99", "shape": [1], "data_offsets": [0, 4]}), bytes(4)),
        "header_not_json": _safetensors(b"import os; os.system('x')"),
        "header_deeply_nested": _safetensors(b"[" * 100_000 + b"]" * 100_000),
    }


def build_corpus(folder: str | os.PathLike, marker: str | os.PathLike) -> list[Path]:
    """Write every hostile file into ``folder``; ``marker`` is the file a payload would create."""
    folder, marker = Path(folder), Path(marker)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, payload in pickle_payloads(marker).items():
        for suffix, content in ((".pth", torch_zip(payload)), (".pdparams", payload)):
            path = folder / f"{name}{suffix}"
            path.write_bytes(content)
            written.append(path)
    legacy = folder / "legacy_format_os_system.pt"  # not a zip archive: torch's legacy reader
    legacy.write_bytes(pickle_payloads(marker)["global_os_system"])
    written.append(legacy)
    huge = folder / "huge_storage_record.pth"
    huge.write_bytes(huge_storage_pth())
    written.append(huge)
    for name, content in safetensors_payloads().items():
        path = folder / f"{name}.safetensors"
        path.write_bytes(content)
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile")
    for file in build_corpus(target, target / MARKER_NAME):
        print(file)
