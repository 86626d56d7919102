"""Reading a ``.safetensors`` file one tensor at a time, converting each as it is read.

``safetensors.torch.load_file`` gives every tensor in the file's own dtype at once, and
``safe_open`` memory-maps the file, so the pages it touches count in the process's resident memory
until the mapping goes. Loading a ViT-L saved in fp32 as bf16 either way holds the 1.2 GB fp32
copy for a moment. Here each tensor is read with plain file reads into a buffer of its own size and
cast at once: the peak is the converted weights plus the largest single tensor of the file.

The format (a little-endian ``u64`` header length, a JSON header naming each tensor's dtype, shape
and byte range, then the data) is checked as it is read; a file that does not add up is refused.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

import torch

from ..dtypes import cast_floating
from ._common import ConversionError

__all__ = ["read_safetensors_as"]

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_MAX_HEADER = 100 * 1024 * 1024  # the safetensors library's own limit


def _header(handle, path: Path, file_size: int) -> tuple[dict, int]:
    raw = handle.read(8)
    if len(raw) != 8:
        raise ConversionError(f"{path}: not a readable safetensors file (shorter than its header); is it truncated?")
    (length,) = struct.unpack("<Q", raw)
    if length > min(_MAX_HEADER, file_size - 8):
        raise ConversionError(f"{path}: not a readable safetensors file (header length {length}); is it truncated?")
    try:
        header = json.loads(handle.read(length))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConversionError(f"{path}: not a readable safetensors file (bad header: {error})") from None
    if not isinstance(header, dict):
        raise ConversionError(f"{path}: not a readable safetensors file (the header is not a table)")
    header.pop("__metadata__", None)
    return header, 8 + length


def _file_position(item: tuple[str, object]) -> int:
    """Where a header entry's data starts, to read the file front to back; 0 for an entry too
    damaged to say (the checks below then refuse it with its name)."""
    try:
        return int(item[1]["data_offsets"][0])
    except (KeyError, IndexError, TypeError, ValueError):
        return 0


def read_safetensors_as(
    path: str | os.PathLike, dtype: torch.dtype | None = None, device: str | torch.device | None = None
) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, floating ones converted to ``dtype`` as each is read.

    Args:
        path: the file.
        dtype: floating-point tensors become this dtype (integer and bool tensors are kept).
            ``None`` keeps every tensor's own dtype.
        device: where the tensors go (each moved as it is read).

    Raises:
        FileNotFoundError: no such file.
        ConversionError: the file is truncated or its header does not describe its data.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    file_size = path.stat().st_size
    tensors: dict[str, torch.Tensor] = {}
    with open(path, "rb") as handle:
        header, data_start = _header(handle, path, file_size)
        for name, spec in sorted(header.items(), key=_file_position):
            try:
                source_dtype = _DTYPES[spec["dtype"]]
                shape = [int(n) for n in spec["shape"]]
                begin, end = (int(n) for n in spec["data_offsets"])
            except (KeyError, TypeError, ValueError):
                raise ConversionError(f"{path}: tensor {name!r} has an unreadable entry in the header") from None
            expected = math.prod(shape) * source_dtype.itemsize
            if min(shape, default=0) < 0 or end - begin != expected or begin < 0 or data_start + end > file_size:
                raise ConversionError(
                    f"{path}: tensor {name!r} does not fit the file (bytes {begin}-{end} for shape {shape}, "
                    f"{spec['dtype']}); is it truncated?"
                )
            buffer = bytearray(expected)
            handle.seek(data_start + begin)
            if handle.readinto(buffer) != expected:
                raise ConversionError(f"{path}: tensor {name!r} is cut short; is the file truncated?")
            tensor = torch.frombuffer(buffer, dtype=source_dtype) if expected else torch.empty(0, dtype=source_dtype)
            tensor = tensor.reshape(shape)
            tensors[name] = cast_floating(tensor, dtype).to(device)
            del buffer, tensor
    return tensors
