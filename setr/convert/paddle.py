"""PaddleViT ``.pdparams`` -> ``setr.SETR``, without paddle.

A ``.pdparams`` written by ``paddle.save(model.state_dict())`` is a plain pickle of
``{structured name: numpy array}`` plus a ``'StructuredToParameterName@@'`` table of names. It is
read here with an unpickler that can build numpy arrays and nothing else: a file that asks for any
other callable is refused before anything in it runs.

PaddleViT's SETR is a port of the official code, so its names map onto the official ones (then
the official converter takes over); what differs: Linear weights are stored ``[in, out]``, BN
statistics are ``_mean``/``_variance`` (and there is no ``num_batches_tracked``), the auxiliary
heads are ``aux_decoder2..5``, and the cls token is dropped before the blocks for every head.
"""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._common import DROP, ConversionError, Rule, apply_rules
from .io import numpy_data_globals
from .official import rename_official

__all__ = ["convert_paddlevit", "paddlevit_rules", "read_pdparams"]

_NAME_TABLE = "StructuredToParameterName@@"
_BIG_PARAMS = "UnpackBigParamInfor@@"


def _allowed_globals() -> dict[tuple[str, str], Any]:
    import _codecs

    return {
        **numpy_data_globals(),
        # protocol 2 pickles store raw array bytes as latin-1 text re-encoded by _codecs.encode
        ("_codecs", "encode"): _codecs.encode,
        # paddle 2.1 pickles a tensor as tuple((name, array))
        ("builtins", "tuple"): tuple,
        ("collections", "OrderedDict"): OrderedDict,
    }


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Builds numpy arrays, numbers, strings and plain containers; refuses every other global."""

    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing a persistent reference (not a .pdparams pickle)")


def _join_big_params(obj: dict[str, Any]) -> dict[str, Any]:
    """Re-assemble arrays that paddle split into ``key@@.i`` slices (pickle protocol 2/3)."""
    info = obj.pop(_BIG_PARAMS, None)
    if not info:
        return obj
    for key, entry in info.items():
        parts = [obj.pop(part) for part in entry["slices"]]
        obj[key] = np.concatenate([np.asarray(p).reshape(-1) for p in parts]).reshape(entry["OriginShape"])
    return obj


def read_pdparams(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a PaddlePaddle ``.pdparams`` file into torch tensors, executing nothing from it.

    Raises:
        FileNotFoundError: the file does not exist.
        ConversionError: not a pickle of numpy arrays (truncated, corrupt, or asks for code).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with path.open("rb") as file:
            obj = _ArraysOnlyUnpickler(file, encoding="latin1").load()
    except pickle.UnpicklingError as error:
        if str(error).startswith("refusing"):
            raise ConversionError(
                f"{path}: refused to load: {error}. A .pdparams holds only numpy arrays; this file asks "
                "for code to run while unpickling, so setr will not open it. Re-save the weights with "
                "paddle.save(model.state_dict(), ...) in a trusted environment."
            ) from None
        raise ConversionError(f"{path}: not a readable .pdparams pickle ({error}); is it truncated?") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as error:
        raise ConversionError(
            f"{path}: cannot read the file ({type(error).__name__}: {error}); is it truncated or corrupt?"
        ) from None
    if not isinstance(obj, Mapping):
        raise ConversionError(f"{path}: expected a dict of arrays (paddle.save of a state_dict), got {type(obj)}")
    obj = _join_big_params(dict(obj))
    obj.pop(_NAME_TABLE, None)
    tensors: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], np.ndarray):
            value = value[1]  # paddle 2.1: (parameter name, array)
        if not isinstance(value, np.ndarray) or value.dtype == object:
            raise ConversionError(f"{path}: entry {key!r} is not a numeric array ({type(value).__name__})")
        tensors[str(key)] = torch.from_numpy(np.ascontiguousarray(value).copy())
    if not tensors:
        raise ConversionError(f"{path}: the file holds no arrays")
    return tensors


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
