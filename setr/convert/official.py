"""Official fudan-zvg/SETR checkpoints (mmcv format, official key names) -> ``setr.SETR``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ._common import DROP, Rule, apply_rules, require_class_token

__all__ = ["convert_official", "official_rules", "rename_official"]

_ENCODER_RULES = [
    Rule(r"backbone\.(patch_embed\.proj\.(weight|bias))", r"encoder.\1"),
    Rule(r"backbone\.blocks\.(\d+)\.(.+)", r"encoder.blocks.\1.\2"),
]
_DEAD_CONV_SEG = Rule(
    r"(decode_head|auxiliary_head\.\d+)\.conv_seg\.(weight|bias)", DROP, "unused BaseDecodeHead layer"
)


def _up_head_rules(source: str, target: str, num_stages: int) -> list[Rule]:
    """``conv_i``/``syncbn_fc_i`` stages and the ``conv_<num_stages>`` classifier of one up head.

    ``source``/``target`` may hold a group ``(?P<idx>...)``/``\\g<idx>`` for the head number.
    """
    return [
        Rule(rf"{source}\.norm\.(?P<p>weight|bias)", rf"{target}.norm.\g<p>"),
        Rule(rf"{source}\.conv_{num_stages}\.(?P<p>weight|bias)", rf"{target}.classifier.\g<p>"),
        Rule(rf"{source}\.conv_(?P<i>\d+)\.(?P<p>weight|bias)", rf"{target}.convs.\g<i>.conv.\g<p>"),
        Rule(rf"{source}\.syncbn_fc_(?P<i>\d+)\.(?P<p>.+)", rf"{target}.convs.\g<i>.bn.\g<p>"),
    ]


def official_rules(config: Mapping[str, Any]) -> list[Rule]:
    """Key-mapping rules from the official names to ours, for a model with ``config``."""
    rules = [_DEAD_CONV_SEG, *_ENCODER_RULES]
    if config["class_token"]:
        rules += [Rule(r"backbone\.(cls_token|pos_embed)", r"encoder.\1")]
    else:
        # Official MLA drops the cls token before the blocks: its token and position slot are dead.
        rules += [
            Rule(r"backbone\.cls_token", DROP, "cls token unused by official MLA"),
            Rule(r"backbone\.pos_embed", r"encoder.pos_embed", transform=lambda t: t[:, 1:].contiguous()),
        ]
    if config["head"] == "mla":
        for stream in range(4):
            level = str(stream)
            p = stream + 2  # official names the levels p2..p5
            rules += [
                Rule(rf"backbone\.norm_{stream}\.(weight|bias)", rf"neck.norms.{level}.\1"),
                Rule(rf"backbone\.mla\.mla_p{p}_1x1\.0\.weight", rf"neck.lateral.{level}.conv.weight"),
                Rule(rf"backbone\.mla\.mla_p{p}_1x1\.1\.(.+)", rf"neck.lateral.{level}.bn.\1"),
                Rule(rf"backbone\.mla\.mla_p{p}\.0\.weight", rf"neck.smooth.{level}.conv.weight"),
                Rule(rf"backbone\.mla\.mla_p{p}\.1\.(.+)", rf"neck.smooth.{level}.bn.\1"),
                Rule(rf"decode_head\.mlahead\.head{p}\.0\.weight", rf"decode_head.branches.{level}.0.conv.weight"),
                Rule(rf"decode_head\.mlahead\.head{p}\.1\.(.+)", rf"decode_head.branches.{level}.0.bn.\1"),
                Rule(rf"decode_head\.mlahead\.head{p}\.3\.weight", rf"decode_head.branches.{level}.1.conv.weight"),
                Rule(rf"decode_head\.mlahead\.head{p}\.4\.(.+)", rf"decode_head.branches.{level}.1.bn.\1"),
            ]
        rules += [
            Rule(r"decode_head\.cls\.(weight|bias)", r"decode_head.classifier.\1"),
            Rule(r"auxiliary_head\.(\d+)\.aux\.(weight|bias)", r"aux_heads.\1.classifier.\2"),
        ]
    else:
        rules += _up_head_rules("decode_head", "decode_head", len(config["decode_up_scales"]))
        rules += _up_head_rules(r"auxiliary_head\.(?P<idx>\d+)", r"aux_heads.\g<idx>", len(config["aux_up_scales"]))
    return rules


def convert_official(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Official ``state_dict`` -> our key names. Drops only ``conv_seg`` (and MLA's dead cls token).

    Raises:
        ConversionError: any key left unmapped, or a model whose cls-token handling is not the
            official one (Naive/PUP run it through the blocks, MLA drops it).
    """
    require_class_token(config, "official")
    return rename_official(state_dict, config)


def rename_official(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Official names -> ours for ``config`` as it is (PaddleViT, whose cls handling differs, reuses it)."""
    return apply_rules(state_dict, official_rules(config), "official SETR checkpoint")
