"""``create_model``: build a SETR by name, optionally with weights."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..convert import detect_format, load_timm_encoder, read_checkpoint
from ..devices import resolve_device
from ..dtypes import as_dtype
from ..models import SETR, SETRBackbone, default_taps, official_aux_indices
from ..models.config import SETRConfig, check_num_classes
from ..models.hub_mixin import looks_like_path, read_config_file
from ..models.loading import CONFIG_FILE, apply_loading_rules, build_and_load, weights_file
from .hub import download_release
from .registry import describe, is_model, lookup, split_model_name, user_entrypoint

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
    dtype = as_dtype(dtype) if dtype is not None else None
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
    """Resolve ``name`` and where its weights come from; every route with weights ends in the one
    pipeline (:func:`setr.models.loading.build_and_load`, then :func:`apply_loading_rules`)."""
    if isinstance(name, os.PathLike) or (isinstance(name, str) and not is_model(name) and _is_model_folder(name)):
        if pretrained or checkpoint_path is not None:
            raise ValueError(f"{name} is a model folder: it brings its own weights; drop pretrained/checkpoint_path")
        return SETR.from_pretrained(name, aux_heads=aux_heads, dtype=dtype, **overrides)
    if not is_model(name) and _names_a_path(name):
        _refuse_local_name(name)
    base, _ = split_model_name(name)
    if pretrained and checkpoint_path is not None:
        raise ValueError("give either pretrained=True or checkpoint_path, not both")
    if not isinstance(aux_heads, bool):
        raise TypeError(f"aux_heads={aux_heads!r}: expected True or False")
    if checkpoint_path is not None and _is_model_folder(checkpoint_path):
        return _load_model_folder(name, checkpoint_path, aux_heads, overrides, dtype)
    load_weights = pretrained or checkpoint_path is not None
    requested_classes = overrides.pop("num_classes", None) if load_weights else None
    if requested_classes is not None:  # before any file is read or downloaded
        check_num_classes(requested_classes)
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
            # released checkpoints hold the official auxiliary heads: their tensors are accounted for
            kwargs["aux_indices"] = official_aux_indices(kwargs["head"], kwargs["depth"])

        def build(**extra: Any) -> SETR:
            model = SETR(**{**kwargs, **extra})
            model.info = describe(entry, tag, release, model.num_classes).for_channels(model.config.in_chans)
            return model

    if not load_weights:
        return _apply_aux_choice(build(), aux_heads, explicit_aux)
    if pretrained:
        path, provenance = download_release(entry.name, tag)
        model = build_and_load(build, path, "setr", dtype=dtype, aux_heads=aux_heads or explicit_aux)
        model.info = model.info.replace(**provenance)
    else:
        path = weights_file(checkpoint_path)
        state = read_checkpoint(path, dtype)
        if detect_format(state) == "timm":  # ImageNet weights initialise the encoder; the heads stay random
            model = build(**({"num_classes": requested_classes} if requested_classes is not None else {}))
            model = _init_from_timm(model, state, path)
        else:
            model = build_and_load(build, state, dtype=dtype, num_classes=requested_classes,
                                   aux_heads=aux_heads or explicit_aux, origin=path)  # fmt: skip
    return apply_loading_rules(
        model, num_classes=requested_classes, aux_heads=aux_heads, keep_built_aux=explicit_aux,
        source=str(checkpoint_path or name),
    )  # fmt: skip


def _apply_aux_choice(model: SETR, aux_heads: bool, explicit_aux: bool) -> SETR:
    """A model without loaded weights keeps the auxiliary heads it was asked for."""
    return model if aux_heads or explicit_aux else model.drop_aux_heads()


def _is_model_folder(path: str | os.PathLike) -> bool:
    return (Path(path).expanduser() / CONFIG_FILE).is_file()


def _names_a_path(name: str) -> bool:
    """A name that exists on disk, or has a path separator or a leading ``.``/``~``, is a path:
    zoo names have neither."""
    if Path(name).expanduser().exists():
        return True
    return ("/" in name or os.sep in name or name.startswith((".", "~"))) and looks_like_path(name)


def _refuse_local_name(name: str) -> None:
    """Say what is wrong with a local path given as a model name (no zoo lookup, no network)."""
    path = Path(name).expanduser()
    if path.is_file():
        raise ValueError(
            f"{name} is a checkpoint file, not a model name or folder: "
            f"create_model(<zoo name>, checkpoint_path='{name}') loads it into that architecture"
        )
    if path.is_dir():
        raise FileNotFoundError(f"{name} has no {CONFIG_FILE}: not a folder written by save_pretrained")
    raise FileNotFoundError(f"no such folder: {name}")


def _load_model_folder(
    name: str, folder: str | os.PathLike, aux_heads: bool, overrides: dict[str, Any], dtype: torch.dtype | None
) -> SETR:
    """``checkpoint_path=`` a ``save_pretrained`` folder: the folder's ``config.json`` gives the
    architecture (the weights were saved for it); what ``name`` fixes must agree with it, or the
    load is refused naming both (docs/weights.md)."""
    if user_entrypoint(split_model_name(name)[0]) is None:
        entry, _, release = lookup(name)
        saved = read_config_file(Path(folder).expanduser() / CONFIG_FILE)
        named = {**entry.kwargs(), **(release.model_overrides if release else {}), **overrides}
        SETRConfig.from_dict(named)  # the options themselves are checked first
        _check_folder_is_named_model(name, named, entry.dataset is not None, folder, saved, overrides)
    model = SETR.from_pretrained(folder, aux_heads=aux_heads, dtype=dtype, **overrides)
    model.info = model.info.replace(loaded_from={"checkpoint": str(weights_file(folder)), "format": "setr"})
    return model


def _check_folder_is_named_model(
    name: str, named: dict[str, Any], has_dataset: bool, folder: str | os.PathLike, saved: dict[str, Any],
    overrides: dict[str, Any],
) -> None:  # fmt: skip
    """Refuse a folder whose model is not the one ``name`` says: another head, or (for a dataset's
    name, unless ``num_classes`` is given to re-initialise the classifiers) another class count.
    The encoder's size comes from the folder (its weights were saved for it)."""
    if saved.get("head") != named["head"]:
        raise ValueError(
            f"{folder} holds a {saved.get('head')} model, not a {named['head']} one like {name}; "
            f"load the folder itself with --model {folder} (create_model('{folder}'))"
        )
    info = saved.get("info") if isinstance(saved.get("info"), dict) else {}
    classes, expected = saved.get("num_classes"), named["num_classes"]
    if has_dataset and "num_classes" not in overrides and classes != expected:
        raise ValueError(
            f"{folder} holds {info.get('name') or 'a SETR-' + str(saved.get('head'))} "
            f"({info.get('dataset') or 'its own dataset'}), not {name} ({classes} classes vs {expected}): load the "
            f"folder as itself with create_model('{folder}') or setr.from_pretrained('{folder}'), or pass "
            f"num_classes={expected} to re-initialise its classifiers for {name}"
        )


def _custom_builder(entrypoint: Callable[..., SETR], name: str, overrides: dict[str, Any]) -> Callable[..., SETR]:
    def build(**extra: Any) -> SETR:
        model = entrypoint(**{**overrides, **extra})
        if isinstance(model, SETR) and model.info.name is None:
            model.info = model.info.replace(name=name, architecture=name)
        return model

    return build


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
