"""``create_model``: build a SETR by name, optionally with weights."""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ._registry import get_entrypoint, get_pretrained_cfg, split_model_name
from .data.meta import DATASETS, IMAGENET_MEAN, IMAGENET_STD
from .models import factory as _architectures  # noqa: F401  (registers the names)
from .models.segmentor import SETR

__all__ = ["create_model"]


def _describe(model: SETR, base: str, tag: str | None, cfg: Any) -> dict[str, Any]:
    """The model's ``pretrained_cfg``: dataset facts, normalisation, test protocol, provenance."""
    info = dict(getattr(model, "pretrained_cfg", {}))
    dataset = DATASETS.get(info.get("dataset", ""))
    info.update(name=base, tag=tag, mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))
    if dataset is not None:
        if dataset.num_classes == model.num_classes:  # other classes keep the protocol, not the names
            info.update(class_names=list(dataset.class_names), palette=[list(c) for c in dataset.palette])
        protocol = asdict(dataset.protocol)
        if cfg is not None and cfg.ms_ratios:
            protocol["ms_ratios"] = cfg.ms_ratios
        info.update(
            ignore_index=dataset.ignore_index,
            reduce_zero_label=dataset.reduce_zero_label,
            protocol=protocol,
        )
    if cfg is not None:
        info["weights"] = cfg.to_dict()
    return info


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
        KeyError: unknown name or tag (the message lists the closest names).
        setr.convert.ConversionError: the weights do not fit the model.
    """
    base, tag = split_model_name(name)
    entrypoint = get_entrypoint(base)
    resolved = get_pretrained_cfg(name)
    cfg = resolved[2] if resolved else None
    if resolved:
        tag = resolved[1]
    load_weights = pretrained or checkpoint_path is not None
    if pretrained and checkpoint_path is not None:
        raise ValueError("give either pretrained=True or checkpoint_path, not both")
    if pretrained and cfg is None:
        raise ValueError(
            f"{base!r} has no released weights; pick a zoo name from setr.list_models(pretrained=True) "
            "or pass checkpoint_path"
        )

    requested_classes = overrides.pop("num_classes", None) if load_weights else None
    kwargs = {**(cfg.model_overrides if cfg else {}), **overrides}
    describe_tag = tag if (cfg and (load_weights or tag)) else None

    def build(**extra: Any) -> SETR:
        model = entrypoint(**kwargs, **extra)
        model.pretrained_cfg = _describe(model, base, describe_tag, cfg)
        return model

    if checkpoint_path is not None:
        model = _build_from_checkpoint(build, checkpoint_path, requested_classes)
    else:
        model = build()
        if pretrained:
            from .hub import load_pretrained_weights

            load_pretrained_weights(model, base, tag)

    if requested_classes is not None and requested_classes != model.num_classes:
        from .hub import reinit_classifiers

        reinit_classifiers(model, requested_classes, name)
    return model


def _build_from_checkpoint(build: Any, checkpoint_path: str | os.PathLike, requested_classes: int | None) -> SETR:
    """Build the model and load ``checkpoint_path`` strictly (the file is read once).

    With ``requested_classes``, a checkpoint that already has that many classes loads as is (a
    user's fine-tuned weights); otherwise the model is built with the checkpoint's classes, loaded,
    and the caller re-initialises the classifiers.
    """
    from .convert import ConversionError, convert_state_dict, detect_format
    from .convert.io import read_checkpoint
    from .hub import WEIGHTS_FILE

    folder_weights = Path(checkpoint_path) / WEIGHTS_FILE
    if Path(checkpoint_path).is_dir() and folder_weights.is_file():  # a save_pretrained folder
        checkpoint_path = folder_weights
    state = read_checkpoint(checkpoint_path)
    fmt = detect_format(state)
    model = build(**({"num_classes": requested_classes} if requested_classes is not None else {}))
    if fmt == "timm":
        return _init_from_timm(model, state, checkpoint_path)
    try:
        converted = convert_state_dict(state, model, fmt)
    except ConversionError as error:
        found = getattr(error, "checkpoint_classes", None)
        if requested_classes is None or found is None:
            raise ConversionError(f"{checkpoint_path}: {error}") from None
        model = build(num_classes=found)  # load as saved; the caller re-initialises the classifiers
        try:
            converted = convert_state_dict(state, model, fmt)
        except ConversionError as other:
            raise ConversionError(f"{checkpoint_path}: {other}") from None
    model.load_state_dict(converted, strict=True)
    model.pretrained_cfg["loaded_from"] = {"checkpoint": str(checkpoint_path), "format": fmt}
    return model


def _init_from_timm(model: SETR, state: dict[str, Any], checkpoint_path: str | os.PathLike) -> SETR:
    """ImageNet ViT weights (timm layout) initialise the encoder; the heads keep their random init."""
    from .convert.timm import load_timm_encoder

    report = load_timm_encoder(model, state)
    warnings.warn(
        f"{checkpoint_path}: timm ImageNet weights initialise the encoder only "
        f"({len(report.dropped)} tensors dropped: {', '.join(sorted(report.dropped))}); "
        "the heads are randomly initialised and need training",
        stacklevel=3,
    )
    model.pretrained_cfg["loaded_from"] = {"checkpoint": str(checkpoint_path), "format": "timm"}
    model.pretrained_cfg.pop("weights", None)  # the zoo entry's mIoU does not describe these weights
    return model
