"""OpenVINO IR: the plain SETR as an ``.xml`` + ``.bin`` pair (fp32 weights, or int8 through NNCF),
and :class:`OpenVINONetwork`, which runs it on OpenVINO's CPU plugin in a precision chosen when it
is compiled (``fp32``, ``bf16`` or ``auto``).

Needs the ``openvino`` extra (``pip install "setr-pytorch[openvino]"``: ``openvino`` and ``nncf``);
imported only when an IR is written or read.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Sized
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..dtypes import auto_precision, cpu_has_native_bf16, parse_precision
from ..files import atomic_staging, check_free_space
from .metadata import METADATA_KEY, parse_metadata
from .requirements import require
from .runner import ExportedNetwork

__all__ = ["RUN_PRECISIONS", "OpenVINONetwork", "load_openvino", "quantization_summary", "write_openvino"]

RUN_PRECISIONS = ("fp32", "bf16", "auto")
"""What an IR runs in, chosen when it is compiled: ``auto`` is bf16 where the CPU computes it natively."""

_HINTS = {"fp32": "f32", "bf16": "bf16"}
# ops an int8 input passes through on its way from a FakeQuantize to the layer that computes with it
_PASS_THROUGH = {"Convert", "Reshape", "Transpose", "Unsqueeze", "Squeeze", "Multiply", "Subtract", "Concat", "Split",
                 "VariadicSplit", "Gather", "StridedSlice", "Slice"}  # fmt: skip
_COMPUTE = ("MatMul", "Convolution", "ScaledDotProductAttention")


def bin_path(xml: str | os.PathLike) -> Path:
    """The weights file of the IR ``xml``: the same name with ``.bin``."""
    return Path(xml).with_suffix(".bin")


def write_openvino(
    program: torch.export.ExportedProgram,
    path: Path,
    metadata: dict[str, Any],
    in_chans: int,
    static_shape: tuple[int, int, int, int] | None,
    calibration: Iterable[torch.Tensor] | None = None,
) -> str | None:
    """Convert a dynamic ``torch.export`` program to an IR and write ``path`` + its ``.bin`` as a pair.

    The program is converted with symbolic batch, height and width (``openvino.convert_model`` of a
    ``torch.export`` program), quantized by NNCF when ``calibration`` is given (the dynamic graph,
    with the windows as they are), then fixed to ``static_shape`` when given. ``metadata`` goes in
    the IR's runtime info under ``setr``. Weights are stored as they are (``compress_to_fp16=False``).

    Returns:
        What NNCF quantized (:func:`quantization_summary`), or ``None`` without calibration.
    """
    ov = require("openvino", "OpenVINO export", "openvino")
    model = ov.convert_model(program)
    model.reshape({model.inputs[0]: ov.PartialShape([-1, in_chans, -1, -1])})
    summary = None
    if calibration is not None:
        model = _quantize(model, calibration)
        summary = quantization_summary(model)
        metadata = dict(metadata, quantized=summary)
    if static_shape is not None:
        model.reshape({model.inputs[0]: ov.PartialShape(list(static_shape))})
    model.inputs[0].get_tensor().set_names({"images"})
    model.outputs[0].get_tensor().set_names({"logits"})
    model.set_rt_info(json.dumps(metadata), [METADATA_KEY])
    size = sum(op.get_byte_size() for op in model.get_ordered_ops() if op.get_type_name() == "Constant")
    check_free_space(path, size)
    # one staging folder for the pair: both files are whole before either replaces an old one
    with atomic_staging(path.parent, folder=True, size=size) as staging:
        ov.save_model(model, str(staging / path.name), compress_to_fp16=False)
    return summary


def _quantize(model: Any, calibration: Iterable[torch.Tensor]) -> Any:
    """``model`` with NNCF's post-training int8 quantization (the transformer preset), its
    activation ranges measured on ``calibration`` (normalised ``(1, C, H, W)`` windows)."""
    nncf = require("nncf", "int8 quantization", "openvino")
    count = len(calibration) if isinstance(calibration, Sized) else None
    if count == 0:
        raise ValueError("int8 quantization needs calibration windows; got none")
    dataset = nncf.Dataset(calibration, lambda window: np.ascontiguousarray(torch.as_tensor(window).float().numpy()))
    return nncf.quantize(
        model,
        dataset,
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=count or 300,
        preset=nncf.QuantizationPreset.MIXED,
    )


def quantization_summary(model: Any) -> str:
    """What NNCF made int8 in ``model``: the layers its FakeQuantize nodes feed, by type (weights of
    the Linear and convolution layers; attention's inputs q, k, v), read from the graph."""
    fed: dict[str, tuple[Any, set[int]]] = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() == "FakeQuantize":
            for layer, port in _layers_fed(op):
                fed.setdefault(layer.get_friendly_name(), (layer, set()))[1].add(port)
    kinds: Counter[str] = Counter()
    attention_ports: set[int] = set()
    for layer, ports in fed.values():
        kinds[layer.get_type_name()] += 1
        if layer.get_type_name() == "ScaledDotProductAttention":
            attention_ports |= ports
    linears, convs, attention = kinds["MatMul"], kinds["Convolution"], kinds["ScaledDotProductAttention"]
    if not (linears or convs or attention):
        return "nothing was quantized"
    total = Counter(op.get_type_name() for op in model.get_ordered_ops())
    inputs = "/".join(name for port, name in enumerate("qkv") if port in attention_ports) or "none"
    return (
        f"int8 weights and inputs of {linears} of {total['MatMul']} MatMul (Linear) and {convs} of "
        f"{total['Convolution']} convolution layers; attention ({total['ScaledDotProductAttention']} fused "
        f"ScaledDotProductAttention): {attention} with int8 inputs ({inputs}), its softmax in float"
    )


def _layers_fed(node: Any, depth: int = 6) -> list[tuple[Any, int]]:
    """The computing layers (and their input ports) the output of ``node`` reaches through ops that
    only carry it (reshapes, converts, the dequantizing multiply)."""
    found = []
    for output in node.outputs():
        for target in output.get_target_inputs():
            consumer = target.get_node()
            if consumer.get_type_name() in _PASS_THROUGH and depth:
                found += _layers_fed(consumer, depth - 1)
            elif consumer.get_type_name() in _COMPUTE:
                found.append((consumer, target.get_index()))
    return found


# ----------------------------------------------------------------------------------- running
def resolve_run_precision(precision: str | None) -> str:
    """``fp32`` or ``bf16`` to compile an IR in: ``None`` is fp32; ``auto`` is bf16 where this CPU has
    it (:func:`setr.dtypes.cpu_has_native_bf16`); bf16 on a CPU without it falls back to fp32 with
    a warning.

    Raises:
        ValueError: another precision (int8 is chosen at export), naming the ones it takes.
    """
    if precision is not None and precision_is_int8(precision):
        raise ValueError(
            "an OpenVINO IR is made int8 when it is exported (setr export --format openvino --precision int8 "
            "--calibration DIR); run it in fp32, bf16 or auto"
        )
    word = parse_precision(precision or "fp32", RUN_PRECISIONS)
    if word == "auto":
        return auto_precision("cpu")
    if word == "bf16" and not cpu_has_native_bf16():
        warnings.warn(
            "precision bf16: this CPU has no native bf16 (AVX512_BF16, AMX or Arm bf16), so the OpenVINO model "
            "runs in fp32 instead",
            RuntimeWarning,
            stacklevel=3,
        )
        return "fp32"
    return word


def precision_is_int8(precision: str) -> bool:
    return isinstance(precision, str) and precision.strip().lower() == "int8"


class OpenVINONetwork(ExportedNetwork):
    """An OpenVINO IR as an :class:`~setr.export.ExportedNetwork`, compiled for the CPU on its first
    forward in :attr:`precision` (``fp32`` or ``bf16``, set explicitly: OpenVINO's own default is
    bf16 wherever the CPU has it) with :attr:`threads` threads. A dynamic IR is compiled once for
    every size (measured as fast as a static compile); inputs are float32, logits float32."""

    def __init__(self, path: Path, model: Any, metadata: dict, precision: str, threads: int | None) -> None:
        super().__init__(path, self._infer, metadata)
        self._model = model
        self.precision = precision
        self.threads = threads
        self.compile_options: dict[str, Any] = {}
        """More CPU plugin properties for the compile (e.g. ``{"PERF_COUNT": True}`` for a per-layer profile)."""
        self._request = None

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, precision={self.precision}"

    def with_precision(self, precision: str | None, threads: int | None = None) -> OpenVINONetwork:
        """A twin that runs in ``precision`` (see :func:`resolve_run_precision`); the IR is shared."""
        return OpenVINONetwork(self.path, self._model, self.metadata, resolve_run_precision(precision), threads)

    def compiled(self) -> Any:
        """The compiled model (compiling it now if it is not yet)."""
        if self._request is None:
            ov = require("openvino", "running an OpenVINO IR", "openvino")
            config = {
                "INFERENCE_PRECISION_HINT": _HINTS[self.precision],
                "INFERENCE_NUM_THREADS": int(self.threads or torch.get_num_threads()),
                "PERFORMANCE_HINT": "LATENCY",
                **self.compile_options,
            }
            self._request = _core(ov).compile_model(self._model, "CPU", config).create_infer_request()
        return self._request.get_compiled_model()

    def layer_times(self) -> list[tuple[str, str, float]]:
        """``(layer type, kernel, seconds)`` of every layer in the last forward; compile with
        ``compile_options={"PERF_COUNT": True}`` first (empty otherwise)."""
        if self._request is None:
            return []
        return [
            (info.node_type, info.exec_type, info.real_time.total_seconds())
            for info in self._request.get_profiling_info()
        ]

    def _infer(self, x: torch.Tensor) -> torch.Tensor:
        self.compiled()
        logits = self._request.infer({0: x.detach().cpu().numpy()}, share_outputs=False)[0]
        return torch.from_numpy(np.asarray(logits, dtype=np.float32))


@functools.cache
def _core(ov: Any) -> Any:
    """One ``openvino.Core`` per process."""
    return ov.Core()


def load_openvino(path: Path, precision: str | None = None, threads: int | None = None) -> OpenVINONetwork:
    """Open the IR ``path`` (``.xml``, its ``.bin`` beside it) written by :func:`setr.export.export_model`."""
    ov = require("openvino", "running an OpenVINO IR", "openvino")
    word = resolve_run_precision(precision)
    if not bin_path(path).is_file():
        raise ValueError(
            f"{path}: its weights {bin_path(path).name} are not beside it; copy the .xml and .bin together"
        )
    try:
        model = _core(ov).read_model(str(path))
    except Exception as error:  # a damaged IR fails in many ways
        message = " ".join(str(error).split())[:200]
        raise ValueError(f"{path}: not a readable OpenVINO IR ({type(error).__name__}: {message})") from None
    if not model.has_rt_info([METADATA_KEY]):
        raise ValueError(f"{path}: an OpenVINO IR without setr metadata; export it with `setr export`")
    metadata = parse_metadata(model.get_rt_info([METADATA_KEY]).astype(str), str(path))
    return OpenVINONetwork(path, model, metadata, word, threads)
