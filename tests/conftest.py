"""Shared fixtures: tiny model configurations and the official golden outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

DATA = Path(__file__).resolve().parent / "data"
GOLDEN = DATA / "golden"
KEYS = DATA / "keys"

TINY = dict(img_size=64, embed_dim=64, depth=4, num_heads=4, num_classes=19)
"""The golden tiny configuration (official_setr configs shrunk): taps remapped to 4 blocks."""
TINY_TAPS = {
    "naive": dict(decode_index=3, aux_indices=[1, 2, 3]),
    "pup": dict(decode_index=3, aux_indices=[1, 2, 3, 3]),
    "mla": dict(mla_indices=[0, 1, 2, 3]),
}
HEADS = ("naive", "pup", "mla")


SMALL = dict(img_size=32, embed_dim=32, num_heads=2)
"""The smallest encoder the tests build (one 2x2 token grid at the training crop, 2 heads of 16)."""
SMALL_HEADS = dict(head_channels=16, mla_channels=16, mla_head_channels=8)
"""Narrow decoders, for tests that run many forwards (the official heads are 256 wide)."""


def small(depth: int = 2, narrow_heads: bool = False, **extra) -> dict:
    """The one family of tiny configurations: :data:`SMALL` at ``depth`` blocks, with
    :data:`SMALL_HEADS` when ``narrow_heads``, and ``extra`` fields (taps, classes, ...)."""
    return {**SMALL, "depth": depth, **(SMALL_HEADS if narrow_heads else {}), **extra}


def tiny_kwargs(head: str, **extra) -> dict:
    """The golden tiny configuration of ``head``, with the official auxiliary heads."""
    aux = {"aux_indices": [0, 1, 2, 3]} if head == "mla" and "aux_indices" not in extra else {}
    return dict(TINY, head=head, **TINY_TAPS[head], **aux, **extra)


def require_data(path: Path) -> Path:
    """``path`` under tests/data; skip when it is absent, except under CI where that is a failure."""
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: the test data must be present in CI")
        pytest.skip(f"{path} not available")
    return path


def recipe_state_dict(keys: list, seed: int) -> dict[str, torch.Tensor]:
    """The golden weights, by the recipe of tests/data/README.md: one ``numpy.random.default_rng(seed)``
    walks ``keys`` (``[key, shape, dtype]``) in order; integer tensors are zeros and draw nothing; each
    floating tensor draws ``u = rng.random(shape)``, is set by its last name in float64, cast to float32.
    """
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape, dtype in keys:
        if not dtype.startswith("float"):
            state[key] = torch.zeros(shape, dtype=getattr(torch, dtype))
            continue
        u = rng.random(shape)
        c = u - 0.5
        name = key.rsplit(".", 1)[-1]
        if name == "running_var":
            value = u + 0.5
        elif name == "running_mean":
            value = 0.2 * c
        elif name == "weight" and len(shape) == 1:
            value = 1 + 0.2 * c
        elif name in ("bias", "pos_embed", "cls_token"):
            value = 0.04 * c
        else:
            value = 2 * np.sqrt(3) * c / np.sqrt(np.prod(shape[1:]))
        state[key] = torch.from_numpy(value.astype(np.float32))
    return state


def load_golden(head: str) -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, meta)`` of ``official_<head>_tiny``: the recipe weights as ``state_dict.<key>``,
    and the official code's inputs and outputs for them."""
    from safetensors.torch import load_file

    tensors = load_file(str(require_data(GOLDEN / f"official_{head}_tiny_outputs.safetensors")))
    meta = json.loads((GOLDEN / f"official_{head}_tiny_outputs.json").read_text())
    state = recipe_state_dict(meta["weights"]["keys"], meta["weights"]["seed"])
    return {**{f"state_dict.{k}": v for k, v in state.items()}, **tensors}, meta


def golden_state_dict(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("state_dict.") :]: v for k, v in tensors.items() if k.startswith("state_dict.")}


def read_key_list(name: str) -> dict[str, torch.Tensor]:
    """A reference key list as meta tensors of the listed shapes (no memory)."""
    path = require_data(KEYS / name)
    tensors = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape, _dtype = line.split("\t")
        tensors[key] = torch.empty(json.loads(shape), device="meta")
    return tensors


def build_hub_cache(cache: Path, repo_id: str, revision: str, files: dict[str, bytes]) -> None:
    """A Hugging Face cache holding ``files`` for ``repo_id`` at ``revision`` (the layout hf_hub_download reads)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / revision).write_text(commit)
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
