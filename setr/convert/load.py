"""Format detection and strict loading of any supported checkpoint into a model."""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from timm.models import adapt_input_conv

from ..dtypes import cast_floating
from ._common import ConversionError, _listing, _modules
from .io import read_checkpoint
from .mmseg import convert_mmseg
from .official import convert_official
from .paddle import convert_paddlevit

__all__ = ["FORMATS", "check_against_model", "convert_state_dict", "detect_format", "load_checkpoint"]

_Converter = Callable[[Mapping[str, torch.Tensor], Mapping[str, Any]], dict[str, torch.Tensor]]
_CONVERTERS: dict[str, _Converter] = {
    "setr": lambda state_dict, config: dict(state_dict),
    "official": convert_official,
    "mmseg": convert_mmseg,
    "paddlevit": convert_paddlevit,
}
FORMATS = (*_CONVERTERS, "timm")
"""Every layout :func:`detect_format` names; ``timm`` (ImageNet encoders) loads only through
:func:`setr.convert.timm.load_timm_encoder`."""

# (format, key prefix that only that layout has); the first match wins.
_SIGNATURES = (
    ("paddlevit", "encoder.transformer."),
    ("setr", "encoder.blocks."),
    ("setr", "encoder.patch_embed."),
    ("official", "backbone.blocks."),
    ("mmseg", "backbone.layers."),
    ("timm", "blocks."),
)


def _describe(model: torch.nn.Module) -> str:
    config = getattr(model, "config", None)
    if hasattr(config, "head") and hasattr(config, "num_classes"):  # a SETRConfig (convert sits below models)
        return f"{type(model).__name__}(head={config.head!r}, num_classes={config.num_classes})"
    return type(model).__name__


def _class_counts(
    converted: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]
) -> tuple[int, int] | None:
    """``(checkpoint classes, model classes)`` when the only mismatches are classifier rows."""
    mismatched = [k for k in set(expected) & set(converted) if converted[k].shape != expected[k].shape]
    if not mismatched or set(expected) != set(converted):
        return None
    if not all(".classifier." in k and converted[k].shape[1:] == expected[k].shape[1:] for k in mismatched):
        return None
    key = mismatched[0]
    return converted[key].shape[0], expected[key].shape[0]


def check_against_model(converted: Mapping[str, torch.Tensor], model: torch.nn.Module, what: str) -> None:
    """Fail unless ``converted`` has exactly the model's keys, with the model's shapes."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    mis_shaped = sorted(
        f"{k} (checkpoint {list(converted[k].shape)} vs model {list(expected[k].shape)})"
        for k in set(expected) & set(converted)
        if converted[k].shape != expected[k].shape
    )
    classes = _class_counts(converted, expected)
    if classes is not None:
        error = ConversionError(
            f"{what} has {classes[0]} classes but the model {_describe(model)} has {classes[1]} "
            f"(shape mismatch: {_listing(mis_shaped, 2)}). Build the model for the checkpoint's "
            f"{classes[0]} classes (the zoo name of its dataset, or num_classes={classes[0]}); to fine-tune "
            "on other classes, load first and then call model.reset_classifier(num_classes)."
        )
        error.checkpoint_classes = classes[0]  # lets callers rebuild for the checkpoint's classes
        raise error
    problems = []
    if missing:
        problems.append(f"missing from the checkpoint: {_listing(_modules(missing))}")
    if unexpected:
        problems.append(f"not in the model: {_listing(_modules(unexpected))}")
    if mis_shaped:
        problems.append(f"shape mismatch: {_listing(mis_shaped, 6)}")
    if problems:
        raise ConversionError(
            f"{what} does not fit {_describe(model)}: "
            + "; ".join(problems)
            + ". Check that the model name (head, dataset/classes, backbone size) matches the checkpoint."
        )


def detect_format(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Name the layout of ``state_dict`` from its key names: one of :data:`FORMATS`.

    Raises:
        ConversionError: no known layout fits.
    """
    keys = list(state_dict)
    for fmt, prefix in _SIGNATURES:
        if any(k.startswith(prefix) for k in keys):
            return fmt
    raise ConversionError(
        "unrecognised checkpoint layout (first keys: "
        + ", ".join(keys[:5])
        + f"); supported formats: {', '.join(FORMATS)}. Is this a SETR checkpoint?"
    )


def convert_state_dict(
    state_dict: Mapping[str, torch.Tensor], model: torch.nn.Module, fmt: str | None = None
) -> dict[str, torch.Tensor]:
    """Convert ``state_dict`` (any supported layout) to ``model``'s names and check it fits exactly.

    Raises:
        ConversionError: unknown layout, keys left unmapped, missing or mis-shaped.
    """
    fmt = fmt or detect_format(state_dict)
    if fmt == "timm":
        raise ConversionError(
            "this is an ImageNet ViT checkpoint (timm layout), not a segmentation model: load it into the "
            "encoder with setr.convert.timm.load_timm_encoder(model, path)"
        )
    if fmt not in _CONVERTERS:
        raise ConversionError(f"unknown checkpoint format {fmt!r}; supported: {', '.join(_CONVERTERS)}")
    converted = _adapt_input_channels(_CONVERTERS[fmt](state_dict, _config_dict(model)), model)
    check_against_model(converted, model, f"{fmt} checkpoint")
    return converted


def _config_dict(model: torch.nn.Module) -> dict[str, Any]:
    """The model's config as the plain dict the converters read (``SETRConfig.to_dict``)."""
    return model.config.to_dict()


def _adapt_input_channels(converted: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Fit a patch embedding trained on another channel count to ``model``'s with timm's
    ``adapt_input_conv`` (1 channel: the sum over RGB; more: RGB repeated, rescaled by 3/C), warning."""
    key = "encoder.patch_embed.proj.weight"
    expected = model.state_dict().get(key)
    weight = converted.get(key)
    if expected is None or weight is None or weight.ndim != 4 or weight.shape[1] == expected.shape[1]:
        return converted
    if weight.shape[1] != 3 or weight.shape[0] != expected.shape[0] or weight.shape[2:] != expected.shape[2:]:
        return converted  # not a 3-channel embedding of this model: the strict check reports it
    warnings.warn(
        f"the checkpoint's patch embedding reads 3 channels and the model {expected.shape[1]}: adapted with "
        "timm's adapt_input_conv (1 channel: RGB summed; more: RGB repeated and scaled by 3/C); set "
        "model.info = model.info.replace(mean=..., std=...) for your channels' statistics",
        stacklevel=4,
    )
    return {**converted, key: adapt_input_conv(expected.shape[1], weight)}


def _check_finite(state_dict: Mapping[str, torch.Tensor], what: str, dtype: torch.dtype | None) -> None:
    """Refuse a floating tensor holding NaN or Inf, by name: such weights give NaN logits and an
    all-zero mask without any error.

    A tensor's sum is NaN or Inf whenever one of its values is, and a sum is one vectorised pass
    with no temporary (``isfinite().all()`` writes a bool per value and costs several times more);
    only a sum that overflowed is checked value by value. On a ViT-L (300 M values) this is about
    a sixth of reading the file from the page cache (docs/weights.md).
    """
    for name, tensor in state_dict.items():
        if not tensor.is_floating_point() or tensor.is_meta or bool(tensor.sum().isfinite()):
            continue
        if bool(torch.isfinite(tensor).all()):
            continue  # finite values whose sum overflowed
        overflow = f" (or a value overflows {dtype}: load it in float32 or bfloat16)" if dtype == torch.float16 else ""
        raise ConversionError(
            f"{what}tensor {name!r} holds NaN/Inf values: the checkpoint is damaged{overflow}; "
            "download or convert it again, or take an earlier checkpoint of the training run"
        )


def load_checkpoint(
    model: torch.nn.Module,
    source: str | os.PathLike | Mapping[str, torch.Tensor],
    fmt: str | None = None,
    *,
    dtype: torch.dtype | None = None,
) -> str:
    """The one strict loader: read -> detect the format -> convert -> check -> load.

    Every path that puts weights into a model goes through here (``create_model``,
    ``from_pretrained``, ``setr convert``, training resume), so they all refuse the same things
    with the same messages.

    Args:
        model: the model to fill; its ``config`` decides the key mapping.
        source: a checkpoint file (any supported format) or an already-read state dict.
        fmt: the layout, when known (``setr``, ``official``, ``mmseg``, ``paddlevit``); detected
            from the key names otherwise.
        dtype: load floating-point weights in this dtype (read that way from a safetensors file,
            never held in the file's precision whole). A model built on the ``meta`` device
            receives the loaded tensors themselves (``load_state_dict(assign=True)``): no
            initialised copy of its weights ever exists.

    Returns:
        The format that was loaded.

    Raises:
        FileNotFoundError: no such file.
        ConversionError: unreadable or unsafe file, unknown layout, weights that do not fit
            (the message names the file, and ``checkpoint_classes`` is set when only the class
            count differs), or a floating tensor holding NaN/Inf (named).
    """
    is_file = isinstance(source, str | os.PathLike)
    state_dict = read_checkpoint(source, dtype) if is_file else source
    what = f"{source}: " if is_file else ""
    try:
        fmt = fmt or detect_format(state_dict)
        converted = convert_state_dict(state_dict, model, fmt)
    except ConversionError as error:
        if not what:
            raise
        wrapped = ConversionError(f"{what}{error}")
        if hasattr(error, "checkpoint_classes"):
            wrapped.checkpoint_classes = error.checkpoint_classes
        raise wrapped from None
    if dtype is not None:
        converted = cast_floating(converted, dtype)
    _check_finite(converted, what, dtype)
    on_meta = any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers()))
    model.load_state_dict(converted, strict=True, assign=on_meta)
    if on_meta:
        left = [name for name, t in itertools.chain(model.named_parameters(), model.named_buffers()) if t.is_meta]
        if left:
            raise ConversionError(f"{what}these tensors of the model are not in the checkpoint: {', '.join(left)}")
    return fmt
