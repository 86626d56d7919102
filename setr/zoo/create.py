"""``create_model``: build a SETR by name, optionally with weights."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..convert import ConversionError, detect_format, load_checkpoint, load_timm_encoder, read_checkpoint
from ..models import SETR
from ..models.hub_mixin import WEIGHTS_FILE, reinit_classifiers
from .hub import load_release_weights
from .info import describe
from .registry import lookup, split_model_name, user_entrypoint

__all__ = ["create_model"]


def create_model(
    name: str,
    pretrained: bool = False,
    checkpoint_path: str | os.PathLike | None = None,
    **overrides: Any,
) -> SETR:
    """Build a SETR model by name.

    Args:
        name: an architecture (``"setr_pup_vitl"``), a zoo name (``"setr_pup_vitl_cityscapes"``)
            or a released checkpoint (``"setr_pup_vitl_cityscapes.official_80k"``); see
            :func:`setr.list_models`. A bare zoo name means its default tag.
        pretrained: download the name's safetensors from the Hugging Face Hub and load them.
        checkpoint_path: load weights from a local file instead: an official, mmsegmentation or
            PaddleViT checkpoint, our own safetensors or a ``save_pretrained`` folder (the format
            is detected); timm ImageNet ViT weights initialise the encoder only (with a warning).
        **overrides: constructor arguments of :class:`setr.SETR` (``img_size``, ``num_classes``,
            ``decode_index``, ...). With weights, a different ``num_classes`` loads everything
            else and re-initialises the classifiers.

    Raises:
        TypeError: ``name`` is not a string.
        KeyError: unknown name or tag (the message lists the closest names).
        setr.convert.ConversionError: the weights do not fit the model.
    """
    base, _ = split_model_name(name)
    if pretrained and checkpoint_path is not None:
        raise ValueError("give either pretrained=True or checkpoint_path, not both")
    load_weights = pretrained or checkpoint_path is not None
    requested_classes = overrides.pop("num_classes", None) if load_weights else None

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

        def build(**extra: Any) -> SETR:
            model = SETR(**{**kwargs, **extra})
            model.info = describe(entry, tag, release, model.num_classes)
            return model

    if checkpoint_path is not None:
        model = _build_from_checkpoint(build, checkpoint_path, requested_classes)
    else:
        model = build()
        if pretrained:
            load_release_weights(model, entry.name, tag)
    if requested_classes is not None and requested_classes != model.num_classes:
        reinit_classifiers(model, requested_classes, name)
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
    build: Callable[..., SETR], checkpoint_path: str | os.PathLike, requested_classes: int | None
) -> SETR:
    """Build the model and load ``checkpoint_path`` strictly (the file is read once).

    With ``requested_classes``, a checkpoint that already has that many classes loads as is (a
    user's fine-tuned weights); otherwise the model is built with the checkpoint's classes, loaded,
    and the caller re-initialises the classifiers.
    """
    path = _weights_file(checkpoint_path)
    state = read_checkpoint(path)
    fmt = detect_format(state)
    model = build(**({"num_classes": requested_classes} if requested_classes is not None else {}))
    if fmt == "timm":
        return _init_from_timm(model, state, path)
    try:
        load_checkpoint(model, state, fmt)
    except ConversionError as error:
        found = getattr(error, "checkpoint_classes", None)
        if requested_classes is None or found is None:
            raise ConversionError(f"{path}: {error}") from None
        model = build(num_classes=found)  # load as saved; the caller re-initialises the classifiers
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
