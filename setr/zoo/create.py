"""``create_model``: build a SETR by name, optionally with weights."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..convert import ConversionError, detect_format, load_checkpoint, load_timm_encoder, read_checkpoint
from ..devices import resolve_device
from ..dtypes import as_dtype
from ..models import SETR, SETRBackbone, default_taps, official_aux_indices
from ..models.hub_mixin import CONFIG_FILE, WEIGHTS_FILE, reinit_classifiers
from .hub import load_release_weights
from .info import describe
from .registry import is_model, lookup, split_model_name, user_entrypoint

__all__ = ["create_model"]


def create_model(
    name: str | os.PathLike,
    pretrained: bool = False,
    checkpoint_path: str | os.PathLike | None = None,
    aux_heads: bool = False,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    **overrides: Any,
) -> SETR | SETRBackbone:
    """Build a SETR model by name.

    Args:
        name: an architecture (``"setr_pup_vitl"``), a zoo name (``"setr_pup_vitl_cityscapes"``)
            or a released checkpoint (``"setr_pup_vitl_cityscapes.official_80k"``); see
            :func:`setr.list_models`. A bare zoo name means its default tag. A folder written by
            ``save_pretrained`` (e.g. ``examples/train.py``'s ``runs/train/final``) that is not a
            zoo name loads as :func:`setr.from_pretrained` would.
        pretrained: download the name's safetensors from the Hugging Face Hub and load them.
        checkpoint_path: load weights from a local file instead: an official, mmsegmentation or
            PaddleViT checkpoint, our own safetensors or a ``save_pretrained`` folder (the format
            is detected; a folder's own ``config.json`` gives the architecture); timm ImageNet ViT
            weights initialise the encoder only (with a warning).
        aux_heads: build the official recipe's auxiliary heads (training-only; their weights are
            loaded when the checkpoint has them). Without them ``model(x)`` uses every parameter,
            so a user's DDP needs no ``find_unused_parameters``. An explicit ``aux_indices``
            override builds those heads instead.
        features_only: return only the encoder, as a :class:`setr.models.SETRBackbone` whose
            forward gives the ``(B, D, h, w)`` outputs of ``out_indices`` (timm's
            ``features_only`` style), with the name's weights when asked for.
        out_indices: the backbone's blocks (with ``features_only``). Default: the four evenly
            spaced blocks the MLA neck reads (ViT-L ``5, 11, 17, 23``; ViT-B ``2, 5, 8, 11``).
        dtype: the parameters' dtype (``torch.bfloat16`` or ``"bf16"``, ...; default float32).
            With weights, the model is built on the ``meta`` device and the weights are read
            straight into this dtype (a safetensors file one tensor at a time): no fp32 copy of
            the model ever exists. ``model(x)`` then takes inputs of this dtype; for inference at
            a lower precision see :func:`setr.optimize_for_inference`'s ``precision``.
        device: where the parameters go (default the CPU).
        **overrides: constructor arguments of :class:`setr.SETR` (``img_size``, ``num_classes``,
            ``in_chans``, ``decode_index``, ...). With weights, a different ``num_classes`` loads
            everything else and re-initialises the classifiers; a different ``in_chans`` adapts
            the patch embedding (with a warning).

    Raises:
        TypeError: ``name`` is not a string.
        KeyError: unknown name or tag (the message lists the closest names).
        setr.convert.ConversionError: the weights do not fit the model.
    """
    if out_indices is not None and not features_only:
        raise ValueError("out_indices applies to features_only=True; pass both, or neither")
    dtype = as_dtype(dtype)
    device = resolve_device(device) if device is not None else None
    model = _create_segmentor(name, pretrained, checkpoint_path, aux_heads, overrides, dtype)
    if dtype is not None or device is not None:
        model.to(device=device, dtype=dtype)  # no-op for weights already loaded in place
    if not features_only:
        return model
    if out_indices is None:
        out_indices = default_taps("mla", model.config.depth)
    return SETRBackbone(model.encoder, out_indices)


def _create_segmentor(
    name: str | os.PathLike,
    pretrained: bool,
    checkpoint_path: str | os.PathLike | None,
    aux_heads: bool,
    overrides: dict[str, Any],
    dtype: torch.dtype | None,
) -> SETR:
    if isinstance(name, os.PathLike) or (isinstance(name, str) and not is_model(name) and _is_model_folder(name)):
        if pretrained or checkpoint_path is not None:
            raise ValueError(f"{name} is a model folder: it brings its own weights; drop pretrained/checkpoint_path")
        return SETR.from_pretrained(name, aux_heads=aux_heads, dtype=dtype, **overrides)
    base, _ = split_model_name(name)
    if pretrained and checkpoint_path is not None:
        raise ValueError("give either pretrained=True or checkpoint_path, not both")
    if not isinstance(aux_heads, bool):
        raise TypeError(f"aux_heads={aux_heads!r}: expected True or False")
    if checkpoint_path is not None and _is_model_folder(checkpoint_path):
        return _load_model_folder(name, checkpoint_path, aux_heads, overrides, dtype)
    load_weights = pretrained or checkpoint_path is not None
    requested_classes = overrides.pop("num_classes", None) if load_weights else None
    explicit_aux = "aux_indices" in overrides

    custom = user_entrypoint(base)
    if custom is not None:
        if pretrained:
            raise ValueError(f"{base!r} is a registered model without released weights; pass checkpoint_path")
        build = _custom_builder(custom, base, overrides)
    else:
        entry, tag, release = lookup(name)
        if pretrained and release is None:
            raise ValueError(
                f"{base!r} has no released weights; pick a zoo name from setr.list_models(pretrained=True) "
                "or pass checkpoint_path"
            )
        kwargs = {**entry.kwargs(), **(release.model_overrides if release else {}), **overrides}
        if (aux_heads or load_weights) and "aux_indices" not in kwargs:
            # released checkpoints hold the official auxiliary heads: build them to load strictly
            kwargs["aux_indices"] = official_aux_indices(kwargs["head"], kwargs["depth"])

        def build(**extra: Any) -> SETR:
            model = SETR(**{**kwargs, **extra})
            model.info = describe(entry, tag, release, model.num_classes).for_channels(model.config.in_chans)
            return model

    if checkpoint_path is not None:
        model = _build_from_checkpoint(build, checkpoint_path, requested_classes, dtype)
    else:
        with torch.device("meta") if pretrained else contextlib.nullcontext():  # the weights fill it
            model = build()
        if pretrained:
            load_release_weights(model, entry.name, tag, dtype)
    if requested_classes is not None and requested_classes != model.num_classes:
        reinit_classifiers(model, requested_classes, name)
    if aux_heads and not explicit_aux and not model.aux_heads:
        raise ValueError(
            f"{checkpoint_path} was saved without auxiliary heads: load it with aux_heads=False and train "
            "without auxiliary losses"
        )
    if not aux_heads and not explicit_aux:
        model.drop_aux_heads()
    return model


def _is_model_folder(path: str | os.PathLike) -> bool:
    return (Path(path).expanduser() / CONFIG_FILE).is_file()


def _load_model_folder(
    name: str, folder: str | os.PathLike, aux_heads: bool, overrides: dict[str, Any], dtype: torch.dtype | None
) -> SETR:
    """``checkpoint_path=`` a ``save_pretrained`` folder: its ``config.json`` gives the architecture
    (the weights were saved for it), so ``name`` must only agree on the head type."""
    entry, _, _ = lookup(name) if user_entrypoint(split_model_name(name)[0]) is None else (None, None, None)
    model = SETR.from_pretrained(folder, aux_heads=aux_heads, dtype=dtype, **overrides)
    if entry is not None and model.config.head != entry.head:
        raise ValueError(
            f"{folder} holds a {model.config.head} model, not a {entry.head} one like {name}; "
            f"load the folder itself with --model {folder} (create_model('{folder}'))"
        )
    weights = Path(folder).expanduser() / WEIGHTS_FILE
    model.info = model.info.replace(loaded_from={"checkpoint": str(weights), "format": "setr"})
    return model


def _custom_builder(entrypoint: Callable[..., SETR], name: str, overrides: dict[str, Any]) -> Callable[..., SETR]:
    def build(**extra: Any) -> SETR:
        model = entrypoint(**{**overrides, **extra})
        if isinstance(model, SETR) and model.info.name is None:
            model.info = model.info.replace(name=name, architecture=name)
        return model

    return build


def _weights_file(checkpoint_path: str | os.PathLike) -> Path:
    """The file to read: ``checkpoint_path`` itself, or a ``save_pretrained`` folder's weights."""
    path = Path(checkpoint_path)
    if path.is_dir():
        if not (path / WEIGHTS_FILE).is_file():
            raise FileNotFoundError(
                f"{path} is a folder without {WEIGHTS_FILE}: pass a checkpoint file, or a folder written by "
                "save_pretrained"
            )
        return path / WEIGHTS_FILE
    return path


def _build_from_checkpoint(
    build: Callable[..., SETR],
    checkpoint_path: str | os.PathLike,
    requested_classes: int | None,
    dtype: torch.dtype | None = None,
) -> SETR:
    """Build the model and load ``checkpoint_path`` strictly (the file is read once, in ``dtype``).

    With ``requested_classes``, a checkpoint that already has that many classes loads as is (a
    user's fine-tuned weights); otherwise the model is built with the checkpoint's classes, loaded,
    and the caller re-initialises the classifiers. The model is built on the ``meta`` device when
    the checkpoint fills all of it (every format but timm's encoder-only weights).
    """
    path = _weights_file(checkpoint_path)
    state = read_checkpoint(path, dtype)
    fmt = detect_format(state)
    if fmt == "timm":
        model = build(**({"num_classes": requested_classes} if requested_classes is not None else {}))
        return _init_from_timm(model, state, path)

    saved_without_aux = fmt == "setr" and not any(key.startswith("aux_heads.") for key in state)

    def build_empty(**extra: Any) -> SETR:
        if saved_without_aux:  # our own files keep aux heads only when they were trained with them
            extra["aux_indices"] = []
        with torch.device("meta"):
            return build(**extra)

    model = build_empty(**({"num_classes": requested_classes} if requested_classes is not None else {}))
    try:
        load_checkpoint(model, state, fmt)
    except ConversionError as error:
        found = getattr(error, "checkpoint_classes", None)
        if requested_classes is None or found is None:
            raise ConversionError(f"{path}: {error}") from None
        model = build_empty(num_classes=found)  # load as saved; the caller re-initialises the classifiers
        try:
            load_checkpoint(model, state, fmt)
        except ConversionError as other:
            raise ConversionError(f"{path}: {other}") from None
    model.info = model.info.replace(loaded_from={"checkpoint": str(path), "format": fmt})
    return model


def _init_from_timm(model: SETR, state: dict[str, Any], path: Path) -> SETR:
    """ImageNet ViT weights (timm layout) initialise the encoder; the heads keep their random init."""
    report = load_timm_encoder(model, state)
    warnings.warn(
        f"{path}: timm ImageNet weights initialise the encoder only "
        f"({len(report.dropped)} tensors dropped: {', '.join(sorted(report.dropped))}); "
        "the heads are randomly initialised and need training",
        stacklevel=3,
    )
    # the zoo entry's mIoU does not describe these weights
    model.info = model.info.replace(loaded_from={"checkpoint": str(path), "format": "timm"}, release=None)
    return model
