"""Running an exported SETR: ONNX Runtime, a ``torch.export`` program, an AOTInductor package or
an OpenVINO IR (:mod:`setr.export.openvino`), behind one module that takes normalised images and returns logits, as the model did."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models import ModelInfo
from .metadata import METADATA_KEY, parse_metadata
from .requirements import require

__all__ = ["ExportedNetwork", "ExportedShapeError", "load_exported", "takes_run_precision"]


class ExportedShapeError(ValueError):
    """An input the exported graph cannot take (a static export of another size)."""


class ExportedNetwork(nn.Module):
    """An exported SETR as a module: ``(B, in_chans, H, W)`` normalised images -> ``(B, num_classes,
    H, W)`` logits (float32, on the input's device). Inputs are cast to the graph's dtype
    (``input_dtype``: float32, or bfloat16 for a bf16 export).

    ``info`` (:class:`setr.ModelInfo`), ``num_classes``, ``config`` and ``metadata`` come from the
    file, so :class:`setr.inference.Predictor` preprocesses and applies the test protocol as for the
    model it was exported from. A static export takes only its own ``(C, H, W)``; other batch
    sizes are run in chunks of its batch (the last one zero-padded).
    """

    def __init__(self, path: str | os.PathLike, run: Callable[[torch.Tensor], torch.Tensor], metadata: dict) -> None:
        super().__init__()
        self.path = Path(path)
        self._run = run
        self.metadata = metadata
        self.config: dict[str, Any] = dict(metadata.get("config") or {}, in_chans=metadata["in_chans"])
        self.num_classes: int = int(metadata["num_classes"])
        self.info = ModelInfo.from_dict(metadata["info"])
        self.dynamic: bool = bool(metadata["dynamic"])
        self.input_shape: tuple[int, ...] = tuple(metadata["input_shape"])
        dtype = metadata.get("dtype", "float32")  # files of setr 0.2.0 before bf16 export: float32
        if dtype not in ("float32", "bfloat16"):
            raise ValueError(f"{self.path}: unknown graph dtype {dtype!r} in its setr metadata; re-export it")
        self.input_dtype: torch.dtype = getattr(torch, dtype)

    def extra_repr(self) -> str:
        shape = "dynamic" if self.dynamic else "x".join(map(str, self.input_shape))
        return f"{self.path.name}, format={self.metadata['format']}, input={shape}"

    def with_precision(self, precision: str | None, threads: int | None = None) -> ExportedNetwork:
        """This network run in ``precision`` with ``threads``: itself, for a file that runs in the
        precision it was exported in (an OpenVINO IR returns a twin compiled in it).

        Raises:
            ValueError: a precision other than fp32 (or ``None``), or threads, for such a file.
        """
        _runs_as_exported(self.path, precision, threads)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = self.metadata["in_chans"]
        if x.ndim != 4 or x.shape[1] != channels:
            raise ExportedShapeError(f"{self.path.name} takes (B, {channels}, H, W) images, got {tuple(x.shape)}")
        if x.shape[0] == 0:
            return x.new_zeros((0, self.num_classes, *x.shape[-2:]), dtype=torch.float32)
        device = x.device
        x = x.to(self.input_dtype).contiguous()
        if self.dynamic:
            return self._run(x).to(device, torch.float32)
        if tuple(x.shape[1:]) != self.input_shape[1:]:
            height, width = self.input_shape[2:]
            raise ExportedShapeError(
                f"{self.path.name} was exported for {height}x{width} images only (static), got "
                f"{x.shape[-2]}x{x.shape[-1]}: use a sliding window of that crop (Predictor mode='slide', "
                "crop=...), or export with --dynamic"
            )
        batch = self.input_shape[0]
        outputs = []
        for start in range(0, x.shape[0], batch):
            chunk = x[start : start + batch]
            if chunk.shape[0] < batch:
                chunk = torch.cat([chunk, chunk.new_zeros((batch - chunk.shape[0], *chunk.shape[1:]))])
            outputs.append(self._run(chunk).to(device, torch.float32))
        return torch.cat(outputs)[: x.shape[0]]


def takes_run_precision(path: str | os.PathLike) -> bool:
    """Whether the exported file ``path`` is run in a precision chosen when it is loaded (an
    OpenVINO IR, ``.xml``) rather than the one it was exported in."""
    return Path(path).suffix.lower() == ".xml"


def load_exported(path: str | os.PathLike, precision: str | None = None, threads: int | None = None) -> ExportedNetwork:
    """Open a file written by :func:`setr.export.export_model` (the format is read from the file).

    Args:
        path: an ``.onnx`` file, a ``.pt2`` archive (``torch.export`` or AOTInductor) or an
            OpenVINO IR ``.xml`` (its ``.bin`` beside it).
        precision: an OpenVINO IR only: ``fp32`` (default), ``bf16`` or ``auto`` (bf16 where the
            CPU computes it natively), set when it is compiled; bf16 on a CPU without it runs fp32
            with a warning. Other files run in the precision they were exported in.
        threads: an OpenVINO IR only: its ``INFERENCE_NUM_THREADS`` (default
            ``torch.get_num_threads()``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an exported SETR (another model, a corrupt file); the message names it. A
            precision or threads that the file does not take.
        setr.export.MissingExtraError: an ONNX file without ``onnxruntime``, an IR without ``openvino``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no exported model at {path}")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    if takes_run_precision(path):
        from .openvino import load_openvino  # imports openvino only when an IR is opened

        return load_openvino(path, precision, threads)
    _runs_as_exported(path, precision, threads)  # before the (slow) load
    if path.suffix == ".onnx":
        return _load_onnx(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not an exported SETR (neither an .onnx file nor a .pt2 archive)")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        extra = [n for n in names if n.endswith(f"extra/{METADATA_KEY}.json")]
        if extra:  # torch.export.save
            metadata = parse_metadata(archive.read(extra[0]), str(path))
            return _load_program(path, metadata)
    return _load_aoti(path)


def _runs_as_exported(path: Path, precision: str | None, threads: int | None) -> None:
    """Refuse run-time settings for a file that runs in the precision it was exported in."""
    if precision not in (None, "fp32") or threads is not None:
        what = f"precision={precision!r}" if precision not in (None, "fp32") else f"threads={threads!r}"
        raise ValueError(
            f"{path.name} runs in the precision it was exported in: drop {what} (an OpenVINO IR, .xml, takes "
            "fp32, bf16 or auto when it runs)"
        )


def _load_onnx(path: Path) -> ExportedNetwork:
    onnx = require("onnx", "reading an ONNX export")
    ort = require("onnxruntime", "running an ONNX export")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # a damaged protobuf fails in many ways
        raise ValueError(f"{path}: not a readable ONNX file ({type(error).__name__}); is it truncated?") from None
    props = {p.key: p.value for p in proto.metadata_props}
    if METADATA_KEY not in props:
        raise ValueError(f"{path}: an ONNX model without setr metadata; export it with `setr export`")
    metadata = parse_metadata(props[METADATA_KEY], str(path))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        (logits,) = session.run(None, {input_name: x.detach().cpu().numpy()})
        return torch.from_numpy(np.asarray(logits))

    return ExportedNetwork(path, run, metadata)


def _load_program(path: Path, metadata: dict) -> ExportedNetwork:
    try:
        program = torch.export.load(path)
    except Exception as error:
        raise ValueError(f"{path}: not a readable torch.export archive ({type(error).__name__}: {error})") from None
    module = program.module()

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(x)

    return ExportedNetwork(path, run, metadata)


def _load_aoti(path: Path) -> ExportedNetwork:
    try:
        runner = torch._inductor.aoti_load_package(str(path))
        metadata_text = runner.get_metadata().get(METADATA_KEY)
    except Exception as error:
        raise ValueError(f"{path}: not an exported SETR package ({type(error).__name__}: {error})") from None
    if metadata_text is None:
        raise ValueError(f"{path}: an AOTInductor package without setr metadata; export it with `setr export`")
    metadata = parse_metadata(metadata_text, str(path))

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return runner(x)

    return ExportedNetwork(path, run, metadata)
