"""PaddleViT ``.pdparams`` -> ``setr.SETR``, without paddle.

The file itself is read by :func:`setr.convert.pdparams.read_pdparams`.

PaddleViT's SETR is a port of the official code, so its names map onto the official ones (then
the official converter takes over); what differs: Linear weights are stored ``[in, out]``, BN
statistics are ``_mean``/``_variance`` (and there is no ``num_batches_tracked``), the auxiliary
heads are ``aux_decoder2..5``, and the cls token is dropped before the blocks for every head.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ._common import DROP, ConversionError, Rule, apply_rules
from .official import rename_official

__all__ = ["convert_paddlevit", "paddlevit_rules"]


def _transposed(weight: torch.Tensor) -> torch.Tensor:
    return weight.t().contiguous()


def paddlevit_rules(config: Mapping[str, Any]) -> list[Rule]:
    """Rules from PaddleViT names to the official SETR names (then :func:`convert_official`)."""
    layer = r"encoder\.transformer\.encoder\.layers\.(\d+)"
    rules = [
        Rule(r"encoder\.transformer\.embeddings\.position_embeddings", "backbone.pos_embed"),
        Rule(r"encoder\.transformer\.embeddings\.cls_token", "backbone.cls_token"),
        Rule(r"encoder\.transformer\.embeddings\.patch_embeddings\.(weight|bias)", r"backbone.patch_embed.proj.\1"),
        Rule(rf"{layer}\.attn_norm\.(weight|bias)", r"backbone.blocks.\1.norm1.\2"),
        Rule(rf"{layer}\.mlp_norm\.(weight|bias)", r"backbone.blocks.\1.norm2.\2"),
        Rule(rf"{layer}\.attn\.qkv\.weight", r"backbone.blocks.\1.attn.qkv.weight", transform=_transposed),
        Rule(rf"{layer}\.attn\.out\.weight", r"backbone.blocks.\1.attn.proj.weight", transform=_transposed),
        Rule(rf"{layer}\.mlp\.(fc1|fc2)\.weight", r"backbone.blocks.\1.mlp.\2.weight", transform=_transposed),
        Rule(rf"{layer}\.attn\.qkv\.bias", r"backbone.blocks.\1.attn.qkv.bias"),
        Rule(rf"{layer}\.attn\.out\.bias", r"backbone.blocks.\1.attn.proj.bias"),
        Rule(rf"{layer}\.mlp\.(fc1|fc2)\.bias", r"backbone.blocks.\1.mlp.\2.bias"),
        Rule(r"encoder\.(norm_\d|mla)\.(.+)", r"backbone.\1.\2"),
        Rule(r"decoder\.(head\d\..+)", r"decode_head.mlahead.\1"),
        Rule(r"decoder\.(.+)", r"decode_head.\1"),
    ]
    num_aux = len(config["aux_indices"])
    for k in range(2, 6):
        if config["head"] == "mla" and k == 5 and num_aux == 3:
            why = "PaddleViT's MLA builds aux_decoder5 but its forward never runs it: never trained"
            rules.append(Rule(r"aux_decoder5\..+", DROP, why))
        else:
            rules.append(Rule(rf"aux_decoder{k}\.(.+)", rf"auxiliary_head.{k - 2}.\1"))
    return rules


def _official_bn_names(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``_mean``/``_variance`` -> ``running_mean``/``running_var``, plus torch's step counter."""
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.endswith("._mean"):
            prefix = key[: -len("._mean")]
            renamed[f"{prefix}.running_mean"] = value
            # eval-mode BN never reads the counter; torch's state dict has one per BN layer
            renamed[f"{prefix}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
        elif key.endswith("._variance"):
            renamed[key[: -len("._variance")] + ".running_var"] = value
        else:
            renamed[key] = value
    return renamed


def convert_paddlevit(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """PaddleViT ``state_dict`` (as read by :func:`read_pdparams`) -> our key names.

    Raises:
        ConversionError: a key left unmapped, or a model that runs a cls token (PaddleViT never does).
    """
    if config["class_token"]:
        raise ConversionError(
            "PaddleViT's SETR drops the cls token before the first block for every head, but this model "
            "runs one (class_token=True): use a *.paddlevit_* zoo name, or pass class_token=False"
        )
    official = apply_rules(state_dict, paddlevit_rules(config), "PaddleViT SETR checkpoint")
    return rename_official(_official_bn_names(official), config)
