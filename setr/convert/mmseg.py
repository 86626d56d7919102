"""mmsegmentation SETR checkpoints (0.x layout, as released) -> ``setr.SETR``.

Load them into the zoo tags ``*.mmseg_*``: those set the options in which mmseg's network differs
from the official one (heads without conv bias, extra upsampling, three Naive/PUP auxiliary heads,
MLA with a 1x1 classifier and ``align_corners=False``, biased MLA auxiliary classifiers).

Two mmseg orderings differ from ours and are undone here:

- the MLA neck's ``feat_extract.k`` and the MLA head's ``up_convs.k`` act on level ``3 - k``
  (mmseg's neck outputs are deepest first; ``channel_proj.k`` is level ``k``, shallowest first);
- the MLA head concatenates its branches deepest first, so the input-channel blocks of its 1x1
  classifier are reversed to match our shallowest-first concatenation;
- MLA auxiliary head ``k`` reads neck output ``k``, i.e. level ``3 - k``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ._common import DROP, ConversionError, Rule, apply_rules, require_class_token

__all__ = ["convert_mmseg", "mmseg_rules"]

_PATCH_BIAS = "backbone.patch_embed.projection.bias"
_NUM_LEVELS = 4
_BLOCK = [
    ("ln1", "norm1"),
    ("ln2", "norm2"),
    (r"attn\.attn\.in_proj_", "attn.qkv."),
    (r"attn\.attn\.out_proj\.", "attn.proj."),
    (r"ffn\.layers\.0\.0\.", "mlp.fc1."),
    (r"ffn\.layers\.1\.", "mlp.fc2."),
]


def _encoder_rules(class_token: bool) -> list[Rule]:
    rules = [Rule(r"backbone\.patch_embed\.projection\.(weight|bias)", r"encoder.patch_embed.proj.\1")]
    for source, target in _BLOCK:
        rules.append(Rule(rf"backbone\.layers\.(\d+)\.{source}(.*)", rf"encoder.blocks.\1.{target}\2"))
    if class_token:
        rules.append(Rule(r"backbone\.(cls_token|pos_embed)", r"encoder.\1"))
    else:
        # mmseg's MLA (with_cls_token=False) drops the cls token right after adding positions.
        rules += [
            Rule(r"backbone\.cls_token", DROP, "cls token dropped before the blocks (with_cls_token=False)"),
            Rule(r"backbone\.pos_embed", r"encoder.pos_embed", transform=lambda t: t[:, 1:].contiguous()),
        ]
    return rules


def _up_head_rules(source: str, target: str) -> list[Rule]:
    """One Naive/PUP head; ``source``/``target`` may hold a group ``(?P<idx>...)``/``\\g<idx>``."""
    return [
        Rule(rf"{source}\.norm\.(?P<p>weight|bias)", rf"{target}.norm.\g<p>"),
        Rule(rf"{source}\.up_convs\.(?P<j>\d+)\.0\.conv\.weight", rf"{target}.convs.\g<j>.conv.weight"),
        Rule(rf"{source}\.up_convs\.(?P<j>\d+)\.0\.bn\.(?P<p>.+)", rf"{target}.convs.\g<j>.bn.\g<p>"),
        Rule(rf"{source}\.conv_seg\.(?P<p>weight|bias)", rf"{target}.classifier.\g<p>"),
    ]


def _reverse_level_blocks(weight: torch.Tensor) -> torch.Tensor:
    """``(C, L*c, k, k)`` with level blocks deepest first -> shallowest first."""
    if weight.shape[1] % _NUM_LEVELS:
        raise ConversionError(f"MLA classifier input width {weight.shape[1]} is not {_NUM_LEVELS} equal blocks")
    return torch.cat(list(reversed(weight.chunk(_NUM_LEVELS, dim=1))), dim=1).contiguous()


def _mla_rules(aux_levels: list[int]) -> list[Rule]:
    rules = []
    for k in range(_NUM_LEVELS):
        level = _NUM_LEVELS - 1 - k  # mmseg index k of a deepest-first list
        rules += [
            Rule(rf"neck\.norm\.{k}\.(weight|bias)", rf"neck.norms.{k}.\1"),
            Rule(rf"neck\.mla\.channel_proj\.{k}\.(conv|bn)\.(.+)", rf"neck.lateral.{k}.\1.\2"),
            Rule(rf"neck\.mla\.feat_extract\.{k}\.(conv|bn)\.(.+)", rf"neck.smooth.{level}.\1.\2"),
            Rule(rf"decode_head\.up_convs\.{k}\.([01])\.(conv|bn)\.(.+)", rf"decode_head.branches.{level}.\1.\2.\3"),
        ]
        if level in aux_levels:
            ours = aux_levels.index(level)
            rules.append(Rule(rf"auxiliary_head\.{k}\.conv_seg\.(weight|bias)", rf"aux_heads.{ours}.classifier.\1"))
    rules += [
        Rule(r"decode_head\.conv_seg\.weight", r"decode_head.classifier.weight", transform=_reverse_level_blocks),
        Rule(r"decode_head\.conv_seg\.bias", r"decode_head.classifier.bias"),
    ]
    return rules


def mmseg_rules(config: Mapping[str, Any]) -> list[Rule]:
    """Key-mapping rules from mmseg 0.x names to ours, for a model with ``config``."""
    require_class_token(config, "mmseg")
    rules = _encoder_rules(config["class_token"])
    if config["head"] == "mla":
        rules += _mla_rules(list(config["aux_indices"]))
    else:
        rules += _up_head_rules("decode_head", "decode_head")
        rules += _up_head_rules(r"auxiliary_head\.(?P<idx>\d+)", r"aux_heads.\g<idx>")
    return rules


def convert_mmseg(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """mmseg ``state_dict`` -> our key names. Drops only the cls token of MLA (unused by mmseg too).

    Raises:
        ConversionError: a key left unmapped, or no patch-embedding bias in a model that has one
            (``patch_bias=False`` builds the model of a checkpoint trained without it; a checkpoint
            with the bias never loads into a model without one: it is never silently dropped).
    """
    has_bias = _PATCH_BIAS in state_dict or "backbone.patch_embed.projection.weight" not in state_dict
    if not has_bias and config.get("patch_bias", True):
        raise ConversionError(
            f"mmseg checkpoint has no {_PATCH_BIAS!r}. Every released mmseg SETR checkpoint (0.x) has one, but "
            "mmseg >= 1.2 trains without it (patch_bias=False) and drops it on load, so a 0.x checkpoint re-saved "
            "by mmseg >= 1.2 has lost it: use the original file. If the model really was trained without a "
            "patch bias, say so: create_model(..., patch_bias=False) (setr: --override patch_bias=false)."
        )
    return apply_rules(state_dict, mmseg_rules(config), "mmseg SETR checkpoint")
