"""timm ViT / DeiT ImageNet weights -> the SETR encoder (how every SETR model was initialised).

The official configs start from timm's ``jx_vit_large_p16_384`` (ViT-L/16, ImageNet-21k then 1k at
384), ``jx_vit_base_p16_384`` or ``deit_base_distilled_patch16_384``. Only the encoder is loaded:
the ImageNet classifier(s), the final LayerNorm and DeiT's distillation token are dropped (SETR
reads raw block outputs), and the position embedding is resampled to the crop grid exactly as the
official ``load_pretrained`` does (bilinear, ``align_corners=False``, patch positions only).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from timm.layers import resample_abs_pos_embed
from torch import nn

from ._common import DROP, ConversionError, Rule, apply_rules
from .io import read_checkpoint
from .load import check_against_model

__all__ = ["EncoderLoadReport", "convert_timm_encoder", "load_timm_encoder", "resample_patch_pos_embed"]

_BLOCK_PARAMS = r"norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2"
_DROPPED = [
    Rule(r"head\.(weight|bias)", DROP, "ImageNet classifier, not part of SETR"),
    Rule(r"head_dist\.(weight|bias)", DROP, "DeiT distillation classifier, not part of SETR"),
    Rule(r"(fc_)?norm\.(weight|bias)", DROP, "final LayerNorm: SETR's heads read the raw block outputs"),
    Rule(r"dist_token", DROP, "DeiT distillation token: the official SETR code discards it"),
]


@dataclass
class EncoderLoadReport:
    """What :func:`load_timm_encoder` did.

    Attributes:
        dropped: ``source key -> why`` for every tensor not loaded.
        pos_embed_grid: ``(source grid, encoder grid)`` of the patch position embedding.
    """

    dropped: dict[str, str] = field(default_factory=dict)
    pos_embed_grid: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))


def resample_patch_pos_embed(pos_embed: torch.Tensor, num_prefix: int, grid: tuple[int, int]) -> torch.Tensor:
    """The patch positions of ``pos_embed`` resampled to ``grid``, prefix slots removed.

    Args:
        pos_embed: ``(1, num_prefix + g*g, D)`` with a square source grid ``g x g``.
        num_prefix: leading cls/distillation slots.
        grid: target token grid ``(h, w)``.

    Returns:
        ``(1, h*w, D)``, bilinear with ``align_corners=False`` (no resampling when the grid matches).
    """
    patches = pos_embed[:, num_prefix:]
    side = math.isqrt(patches.shape[1])
    if side * side != patches.shape[1]:
        raise ConversionError(
            f"timm position embedding {list(pos_embed.shape)} with {num_prefix} prefix slot(s) "
            f"does not hold a square patch grid"
        )
    # timm's resampler, as the encoder uses at run time (bilinear, align_corners=False, no antialias)
    return resample_abs_pos_embed(
        patches, new_size=list(grid), old_size=[side, side], num_prefix_tokens=0, interpolation="bilinear",
        antialias=False,
    )  # fmt: skip


def _encoder_of(model: nn.Module) -> nn.Module:
    encoder = getattr(model, "encoder", model)
    if not hasattr(encoder, "blocks") or not hasattr(encoder, "pos_embed"):
        raise TypeError(f"expected a setr.SETR or setr.models.ViTEncoder, got {type(model).__name__}")
    return encoder


def convert_timm_encoder(
    state_dict: Mapping[str, torch.Tensor], encoder: nn.Module, report: EncoderLoadReport | None = None
) -> dict[str, torch.Tensor]:
    """A timm ViT/DeiT ``state_dict`` -> ``encoder``'s names and position grid.

    Raises:
        ConversionError: a key left unmapped (e.g. layer scale, register tokens: not a plain ViT).
    """
    report = report if report is not None else EncoderLoadReport()
    if "pos_embed" not in state_dict or "patch_embed.proj.weight" not in state_dict:
        raise ConversionError(
            "not a timm ViT checkpoint: no 'pos_embed' / 'patch_embed.proj.weight' (first keys: "
            + ", ".join(list(state_dict)[:5])
            + ")"
        )
    source = dict(state_dict)
    num_prefix = int("cls_token" in source) + int("dist_token" in source)
    pos_embed = source.pop("pos_embed")
    patches = resample_patch_pos_embed(pos_embed, num_prefix, encoder.grid_size)
    side = math.isqrt(pos_embed.shape[1] - num_prefix)
    report.pos_embed_grid = ((side, side), tuple(encoder.grid_size))

    has_cls = encoder.cls_token is not None
    if has_cls:
        if "cls_token" not in source:
            raise ConversionError("the encoder has a cls token but the timm checkpoint has none")
        # DeiT's slot 1 is the distillation position: dropped with the token (as the official code does).
        prefix = pos_embed[:, :1]
        cls_rule = Rule(r"cls_token", r"cls_token")
    else:
        prefix = pos_embed[:, :0]
        cls_rule = Rule(r"cls_token", DROP, "this encoder drops the cls token before the blocks (MLA)")
    if has_cls and num_prefix == 2:
        report.dropped["pos_embed[:, 1]"] = "position of the DeiT distillation token"
    elif not has_cls and num_prefix:
        report.dropped[f"pos_embed[:, :{num_prefix}]"] = "position(s) of tokens this encoder does not run"
    rules = [
        *_DROPPED,
        cls_rule,
        Rule(r"patch_embed\.proj\.(weight|bias)", r"patch_embed.proj.\1"),
        Rule(rf"blocks\.(\d+)\.({_BLOCK_PARAMS})\.(weight|bias)", r"blocks.\1.\2.\3"),
    ]
    converted = apply_rules(source, rules, "timm ViT checkpoint", report.dropped)
    converted["pos_embed"] = torch.cat([prefix, patches], dim=1)
    return converted


def load_timm_encoder(
    model: nn.Module, checkpoint: str | os.PathLike | Mapping[str, torch.Tensor]
) -> EncoderLoadReport:
    """Initialise the encoder of ``model`` from timm ImageNet ViT/DeiT weights, strictly.

    Args:
        model: a ``setr.SETR`` (its ``encoder`` is loaded; the heads are untouched) or a ``ViTEncoder``.
        checkpoint: a ``.pth``/``.bin``/``.safetensors`` file (bare state dict, or under ``model`` as
            in DeiT's releases) or an already loaded state dict.

    Returns:
        What was dropped and how the position embedding was resampled.

    Raises:
        setr.convert.ConversionError: keys left unmapped, missing or mis-shaped (e.g. a ViT-B
            checkpoint for a ViT-L encoder, or a different depth).
    """
    encoder = _encoder_of(model)
    if isinstance(checkpoint, Mapping):
        state_dict, what = dict(checkpoint), "timm state dict"
    else:
        state_dict, what = read_checkpoint(checkpoint), str(checkpoint)
    report = EncoderLoadReport()
    try:
        converted = convert_timm_encoder(state_dict, encoder, report)
        check_against_model(converted, encoder, "timm ViT checkpoint")
    except ConversionError as error:
        raise ConversionError(
            f"{what}: {error} (load_timm_encoder expects a timm ViT/DeiT ImageNet checkpoint of the "
            f"encoder's size: embed_dim {encoder.embed_dim}, depth {encoder.depth}, patch {encoder.patch_size})"
        ) from None
    encoder.load_state_dict(converted, strict=True)
    return report
