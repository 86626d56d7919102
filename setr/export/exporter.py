"""``export_model``: the plain SETR network (normalised images in, logits out) to ONNX, a
``torch.export`` program, an AOTInductor package or an OpenVINO IR, with dynamic or fixed sizes."""

from __future__ import annotations

import copy
import io
import json
import os
from collections.abc import Iterable, Sized
from pathlib import Path

import torch
from torch.export import Dim

from ..dtypes import DTYPES, cast_floating, dtype_word, precision_word
from ..files import atomic_staging, check_free_space, check_new_files, check_output_dir
from ..models import SETR
from .metadata import METADATA_KEY, export_metadata
from .requirements import require

__all__ = ["EXPORT_FORMATS", "EXPORT_PRECISIONS", "MAX_SIDE", "check_export_precision", "export_model"]

EXPORT_FORMATS = ("onnx", "pt2", "aoti", "openvino")
"""``onnx``: an ONNX model (opset 18); ``pt2``: a ``torch.export`` program (``torch.export.save``);
``aoti``: an AOTInductor package for the CPU (runs without ``setr``); ``openvino``: an OpenVINO IR
(``.xml`` + ``.bin``; fp32, or int8 through NNCF)."""

SUFFIXES = {"onnx": ".onnx", "pt2": ".pt2", "aoti": ".pt2", "openvino": ".xml"}
"""The file name ending of each format."""

MAX_SIDE = 16384
"""The largest image side a dynamic export accepts."""

EXPORT_PRECISIONS = {word: DTYPES[word] for word in ("fp32", "bf16")}
"""The precisions a graph can be exported in (its weights and its input; logits come back float32
from :func:`setr.export.load_exported`). ``bf16``: ``pt2`` and ``aoti`` only. An OpenVINO IR takes
``fp32`` or ``int8`` (NNCF, with calibration windows); its bf16 is chosen when it runs."""


def check_export_precision(precision: str, fmt: str) -> None:
    """Refuse a ``precision`` that cannot be exported to ``fmt`` (checkable before any model exists).

    Raises:
        ValueError: ``int8`` (but to OpenVINO), ``auto``, an unknown precision, or bf16 to ONNX or
            OpenVINO; the message says why.
    """
    _export_word(precision, fmt)


def _export_word(precision: str, fmt: str) -> str:
    """:func:`check_export_precision`, giving the precision's word (aliases such as ``float32`` taken)."""
    try:
        word = precision_word(precision)
    except ValueError:
        word = None
    if word == "int8" and fmt == "openvino":
        return word
    if word == "int8":
        raise ValueError(
            "int8 cannot be exported: its Linear layers are PyTorch's packed fbgemm/oneDNN weights, which "
            "torch.export and ONNX do not trace; export bf16 (pt2, aoti) or fp32, or int8 to OpenVINO "
            "(--format openvino --calibration DIR: NNCF quantizes it)"
        )
    if word == "auto":
        raise ValueError("an exported file runs on other machines: choose its precision, fp32 or bf16, not auto")
    if word not in EXPORT_PRECISIONS:
        raise ValueError(f"precision={precision!r}: export takes one of {', '.join(EXPORT_PRECISIONS)}")
    if word == "bf16" and fmt == "onnx":
        raise ValueError(
            "bf16 cannot be exported to ONNX: ONNX Runtime's CPU provider has no bf16 Conv (the graph is "
            "refused at load); export bf16 as pt2 or aoti, or ONNX in fp32"
        )
    if word == "bf16" and fmt == "openvino":
        raise ValueError(
            "an OpenVINO IR keeps fp32 weights and runs in bf16 when it is loaded so: export fp32 and run it with "
            "--precision bf16 (or auto; load_exported(path, precision='bf16'))"
        )
    return word


def export_dtype(model: SETR, precision: str | None, fmt: str) -> torch.dtype:
    """The dtype to export ``model`` in: ``precision``'s, or the model's own when ``None``.

    Raises:
        ValueError: see :func:`check_export_precision`.
    """
    if precision is None and fmt == "openvino":  # an IR keeps fp32 weights whatever the model's
        precision = "fp32"
    if precision is None:
        dtype = next(model.parameters()).dtype
        precision = dtype_word(dtype) or str(dtype)
    word = _export_word(precision, fmt)
    return torch.float32 if word == "int8" else EXPORT_PRECISIONS[word]


def _plain(model: SETR) -> None:
    """Refuse a model that :func:`setr.optimize_for_inference` swapped modules into."""
    for module in model.modules():
        if type(module).__module__.startswith("setr.fast"):
            raise ValueError(
                "export the plain model, not the one setr.optimize_for_inference returned: the exported "
                "graph is the reference network (the runtime does its own optimisation)"
            )


def _example(model: SETR, size: tuple[int, int] | None, batch: int) -> torch.Tensor:
    height, width = size if size is not None else (model.config.img_size,) * 2
    weight = next(model.parameters())
    return torch.randn(batch, model.config.in_chans, height, width, device=weight.device, dtype=weight.dtype)


def _dynamic_shapes(model: SETR) -> dict[str, dict[int, Dim]]:
    # At least two patches per side: a dimension of size 1 is specialised by torch.export.
    smallest = model.config.patch_size + 1
    return {
        "x": {
            0: Dim("batch", min=1, max=1024),
            2: Dim("height", min=smallest, max=MAX_SIDE),
            3: Dim("width", min=smallest, max=MAX_SIDE),
        }
    }


def export_model(
    model: SETR,
    path: str | os.PathLike,
    fmt: str = "onnx",
    dynamic: bool = True,
    size: tuple[int, int] | None = None,
    batch: int = 1,
    force: bool = False,
    precision: str | None = None,
    calibration: Iterable[torch.Tensor] | None = None,
) -> Path:
    """Export ``model`` (its plain forward in eval mode) to ``path``.

    The graph maps normalised images ``(B, in_chans, H, W)`` to logits ``(B, num_classes, H, W)``:
    the padding to a multiple of the patch, the position-embedding resize and the crop back are
    inside it. Preprocessing (normalisation with ``info.mean``/``std``) and the test protocol
    (sliding window, multi-scale) stay outside: :class:`setr.inference.Predictor` applies them
    to an exported file as to a model.

    Args:
        model: a :class:`setr.SETR` (not an optimised one).
        path: the output file (``.onnx``, ``.pt2``, or an OpenVINO ``.xml``, written with its ``.bin``
            as a pair: neither replaces an old file until both are whole).
        fmt: one of :data:`EXPORT_FORMATS`.
        dynamic: batch, height and width symbolic (any height and width from two patches up to
            :data:`MAX_SIDE`, multiples of the patch or not); otherwise the graph takes only
            ``(batch, in_chans, *size)``.
        size: ``(height, width)`` of the example input, and of the static graph. Default: the
            model's crop (``img_size``).
        batch: the batch of a static graph (a dynamic export traces a batch of at least 2).
        force: replace an existing file.
        precision: ``"fp32"`` or ``"bf16"`` (:data:`EXPORT_PRECISIONS`): the graph's weights and
            input dtype; default the model's own. A model in another dtype is exported from a
            converted copy (``model`` is not changed); load it in the target dtype to avoid the copy
            (``create_model(..., dtype=torch.bfloat16)``). bf16 goes to ``pt2``/``aoti`` only.
            ``openvino`` takes ``"fp32"`` or ``"int8"`` (NNCF post-training quantization, transformer
            preset; needs ``calibration``); an IR is run in bf16 by choosing it at load time.
        calibration: ``int8`` to OpenVINO: the windows NNCF measures activation ranges on, a
            sized iterable of normalised ``(1, in_chans, H, W)`` float32 tensors that can be iterated
            more than once (:class:`setr.inference.CalibrationWindows` reads them from images or a
            dataset as the test protocol feeds the network).

    Returns:
        The path written (atomically: an interrupted export leaves no partial file).

    Raises:
        setr.files.OutputExistsError: ``path`` exists and ``force`` is not set.
        setr.export.MissingExtraError: ONNX export without the ``export`` extra, OpenVINO without
            the ``openvino`` extra.
        ValueError: an unknown format, an optimised model, a bad size or batch, a precision
            that cannot be exported (``int8`` but to OpenVINO, ``auto``, bf16 to ONNX or OpenVINO),
            int8 without calibration windows or calibration without int8.
        setr.files.WriteFailed: the disk has no room for the weights (refused after tracing,
            before writing or compiling) or fills up, or the folder is read-only; the old file is whole.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    if not isinstance(model, SETR):
        raise TypeError(f"export_model takes a setr.SETR, got {type(model).__name__}")
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    if size is not None and (len(size) != 2 or any(not isinstance(s, int) or s < 1 for s in size)):
        raise ValueError(f"size must be (height, width) in pixels, got {size!r}")
    if dynamic and size is not None and min(size) <= model.config.patch_size:
        raise ValueError(f"a dynamic export needs an example larger than one patch per side, got {size}")
    _plain(model)
    dtype = export_dtype(model, precision, fmt)
    int8 = precision is not None and precision_word(precision) == "int8"
    if int8 and (calibration is None or (isinstance(calibration, Sized) and len(calibration) == 0)):
        raise ValueError("int8 export needs calibration windows (calibration=...; setr export --calibration DIR)")
    if calibration is not None and not int8:
        raise ValueError("calibration windows are for precision='int8' (an OpenVINO int8 export)")
    path = Path(path)
    check_output_dir(path.parent if str(path.parent) else ".", "the output folder")
    check_new_files([path, path.with_suffix(".bin")] if fmt == "openvino" else [path], force, "force=True (--force)")
    if fmt == "onnx":
        require("onnx", "ONNX export")
        require("onnxscript", "ONNX export")
    if fmt == "openvino":
        require("openvino", "OpenVINO export", "openvino")
        if int8:
            require("nncf", "int8 quantization", "openvino")

    if next(model.parameters()).dtype != dtype:
        model = cast_floating(copy.deepcopy(model), dtype)
    was_training = model.training
    model.eval()
    if fmt == "openvino":
        try:
            return _export_openvino(model, path, dynamic, size, batch, calibration)
        finally:
            model.train(was_training)
    # A dynamic export traces an example batch of at least 2: torch.export specialises a size-1 batch.
    example = _example(model, size, max(batch, 2) if dynamic else batch)
    metadata = export_metadata(model, fmt, dynamic, tuple(example.shape))
    shapes = _dynamic_shapes(model) if dynamic else None
    try:
        with torch.no_grad():
            if fmt == "onnx":
                program = torch.onnx.export(
                    model, (example,), dynamo=True, dynamic_shapes=shapes, opset_version=18,
                    input_names=["images"], output_names=["logits"], verbose=False,
                )  # fmt: skip
                traced = program.exported_program
            else:
                program = traced = torch.export.export(model, (example,), dynamic_shapes=shapes)
            # a staging folder keeps the file's name and takes whatever the writers put next to it;
            # a disk without room for the weights is refused before anything is written (or compiled)
            size = _weight_bytes(traced) if traced is not None else None
            if size is not None:
                check_free_space(path, size)
            with atomic_staging(path.parent, folder=True, size=size) as staging:
                staged = staging / path.name
                if fmt == "onnx":
                    _save_onnx(program, shapes, metadata, staged)
                    return path
                with open(staged, "wb") as file:
                    sink = _KeptWriteError(file)
                    if fmt == "pt2":
                        torch.export.save(program, sink, extra_files={f"{METADATA_KEY}.json": json.dumps(metadata)})
                    else:
                        torch._inductor.aoti_compile_and_package(
                            program,
                            package_path=sink,
                            inductor_configs={"aot_inductor.metadata": {METADATA_KEY: json.dumps(metadata)}},
                        )
                    sink.raise_kept()
    finally:
        model.train(was_training)
    return path


def _export_openvino(
    model: SETR, path: Path, dynamic: bool, size: tuple[int, int] | None, batch: int, calibration
) -> Path:
    """The IR of ``model``: converted from a dynamic ``torch.export`` program (which keeps the
    position-embedding resize for every size), quantized when ``calibration`` is given, then fixed
    to ``(batch, C, *size)`` unless ``dynamic``."""
    from .openvino import write_openvino  # imports openvino only when an IR is written

    crop = (model.config.img_size,) * 2
    traced_size = size if size is not None and min(size) > model.config.patch_size else crop
    example = _example(model, traced_size, 2)
    static = None if dynamic else (batch, model.config.in_chans, *(size or crop))
    metadata = export_metadata(model, "openvino", dynamic, static or tuple(example.shape))
    with torch.no_grad():
        program = torch.export.export(model, (example,), dynamic_shapes=_dynamic_shapes(model))
    write_openvino(program, path, metadata, model.config.in_chans, static, calibration)
    return path


def _weight_bytes(program: torch.export.ExportedProgram) -> int:
    """The bytes of the weights ``program``'s graph uses: at most what a file of it holds."""
    signature = program.graph_signature
    names = {
        **signature.inputs_to_parameters, **signature.inputs_to_buffers, **signature.inputs_to_lifted_tensor_constants
    }  # fmt: skip
    tensors = {**program.state_dict, **program.constants}
    used = {
        id(tensor): tensor
        for node in program.graph.nodes
        if node.op == "placeholder" and node.users and (tensor := tensors.get(names.get(node.name))) is not None
    }
    return sum(t.numel() * t.element_size() for t in used.values() if isinstance(t, torch.Tensor))


class _KeptWriteError(io.RawIOBase):
    """The file torch's C++ archive writer writes a ``.pt2`` through: it never sees a write fail.

    When a write fails (a full disk), torch.export's archive writer writes again on its way out and
    the C++ writer's destructor then throws, which aborts the process ("terminate called after
    throwing an instance of 'c10::Error'", in ``PyTorchStreamWriter``'s end of file). So the first
    ``OSError`` is kept, the rest of the archive dropped, and :meth:`raise_kept` raises it in Python
    once the writer has finished cleanly.
    """

    def __init__(self, file: io.BufferedWriter) -> None:
        super().__init__()
        self.file, self.error = file, None

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:  # torch asks, to tell a buffer from a path; it only rewinds at the end
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._kept(self.file.seek, offset, whence) or 0

    def write(self, data) -> int:
        self._kept(self.file.write, data)
        return memoryview(data).nbytes

    def flush(self) -> None:
        self._kept(self.file.flush)

    def _kept(self, call, *args):
        if self.error is None:
            try:
                return call(*args)
            except OSError as error:
                self.error = error
        return None

    def raise_kept(self) -> None:
        """Flush, then raise the first write error, if any."""
        self.flush()
        if self.error is not None:
            raise self.error


def _save_onnx(program, shapes: dict | None, metadata: dict, path: Path) -> None:
    """Write the ONNX ``program`` to ``path`` with its metadata, checked."""
    onnx = require("onnx", "ONNX export")
    program.save(str(path))
    proto = onnx.load(str(path))
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    if shapes is not None and not all(dims[i].dim_param for i in (0, 2, 3)):
        raise RuntimeError(  # never hand over a static graph as a dynamic one
            "the ONNX exporter produced fixed input sizes "
            f"{[d.dim_param or d.dim_value for d in dims]} for a dynamic export; please report this"
        )
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
