"""``create_model``: build a SETR by name, optionally with weights."""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict
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
        protocol = asdict(dataset.protocol)
        if cfg is not None and cfg.ms_ratios:
            protocol["ms_ratios"] = cfg.ms_ratios
        info.update(
            class_names=list(dataset.class_names),
            palette=[list(c) for c in dataset.palette],
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
            PaddleViT checkpoint, or our own safetensors (the format is detected).
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
    model = entrypoint(**kwargs)
    model.pretrained_cfg = _describe(model, base, tag if (cfg and (load_weights or tag)) else None, cfg)

    if checkpoint_path is not None:
        from .convert import load_checkpoint

        model.pretrained_cfg["loaded_from"] = {
            "checkpoint": str(checkpoint_path),
            "format": load_checkpoint(model, checkpoint_path),
        }
    elif pretrained:
        from .hub import load_pretrained_weights

        load_pretrained_weights(model, base, tag)

    if requested_classes is not None and requested_classes != model.num_classes:
        warnings.warn(
            f"{name}: the weights have {model.num_classes} classes; re-initialising the classifiers "
            f"for {requested_classes} classes (the encoder and the rest of the heads are kept)",
            stacklevel=2,
        )
        model.reset_classifier(requested_classes)
        for key in ("class_names", "palette"):
            model.pretrained_cfg.pop(key, None)
    return model
