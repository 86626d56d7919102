"""Strict state-dict conversion: every source key is mapped or dropped for a stated reason."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

__all__ = [
    "require_class_token", "DROP", "ConversionError", "Rule", "apply_rules",
]  # fmt: skip

DROP = None
"""Target of a rule whose source tensors are discarded (the rule's ``why`` says why)."""


class ConversionError(ValueError):
    """A checkpoint does not fit the model: keys left unmapped, missing or mis-shaped."""


@dataclass(frozen=True)
class Rule:
    """``pattern`` (a full-match regex on the source key) -> ``target`` (a ``re.sub`` template).

    ``target=DROP`` discards the tensor; ``transform`` edits the tensor (e.g. a transpose).
    """

    pattern: str
    target: str | None
    why: str = ""
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None


def _listing(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _modules(keys: list[str]) -> list[str]:
    """Keys grouped by owning module: ``a.bn.weight, a.bn.bias -> a.bn.*`` (single keys kept)."""
    owners: dict[str, list[str]] = {}
    for key in sorted(keys):
        owners.setdefault(key.rsplit(".", 1)[0], []).append(key)
    return [f"{owner}.*" if len(group) > 1 else group[0] for owner, group in owners.items()]


def apply_rules(
    source: Mapping[str, torch.Tensor], rules: list[Rule], what: str, dropped: dict[str, str] | None = None
) -> dict[str, torch.Tensor]:
    """Pop every key of ``source`` through the first rule that matches it.

    Args:
        source: the checkpoint's tensors.
        rules: tried in order; the first full match wins.
        what: names the checkpoint in error messages.
        dropped: if given, receives ``key -> why`` for every discarded tensor.

    Raises:
        ConversionError: keys that no rule matches, or two source keys landing on one target.
    """
    remaining = dict(source)
    converted: dict[str, torch.Tensor] = {}
    compiled = [(re.compile(rule.pattern), rule) for rule in rules]
    for key in list(remaining):
        for regex, rule in compiled:
            if regex.fullmatch(key):
                tensor = remaining.pop(key)
                if rule.target is DROP:
                    if dropped is not None:
                        dropped[key] = rule.why
                    break
                new_key = regex.sub(rule.target, key)
                if new_key in converted:
                    raise ConversionError(f"{what}: two source keys map to {new_key!r}")
                converted[new_key] = rule.transform(tensor) if rule.transform else tensor
                break
    if remaining:
        raise ConversionError(
            f"{what}: {len(remaining)} key(s) could not be mapped: {_listing(sorted(remaining))}. "
            "Is this a checkpoint of this kind of model?"
        )
    return converted


def require_class_token(config: Mapping[str, object], source: str) -> None:
    """Refuse a model whose cls-token handling differs from the official/mmseg checkpoint's network.

    Official and mmseg Naive/PUP run the cls token through every block; their MLA drops it before
    the first block. Loading into the other variant would load without error and compute
    something else, so it is an error.
    """
    expected = config["head"] != "mla"
    if bool(config["class_token"]) == expected:
        return
    what = "runs a cls token through the blocks" if expected else "drops the cls token before the blocks"
    raise ConversionError(
        f"{source} {config['head']} checkpoints come from a network that {what}, but this model has "
        f"class_token={config['class_token']}: use the {source} zoo tag of this model "
        f"(e.g. *.{'mmseg' if source == 'mmseg' else 'official'}_*) or pass class_token={expected}"
    )
