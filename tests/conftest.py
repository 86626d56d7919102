"""Shared fixtures: tiny model configurations and the official golden outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"
GOLDEN = SHARED / "golden"
KEYS = SHARED / "reference" / "keys"

TINY = dict(img_size=64, embed_dim=64, depth=4, num_heads=4, num_classes=19)
"""The golden tiny configuration (official_setr configs shrunk): taps remapped to 4 blocks."""
TINY_TAPS = {
    "naive": dict(decode_index=3, aux_indices=[1, 2, 3]),
    "pup": dict(decode_index=3, aux_indices=[1, 2, 3, 3]),
    "mla": dict(mla_indices=[0, 1, 2, 3]),
}
HEADS = ("naive", "pup", "mla")


def tiny_kwargs(head: str, **extra) -> dict:
    """The golden tiny configuration of ``head``, with the official auxiliary heads."""
    aux = {"aux_indices": [0, 1, 2, 3]} if head == "mla" and "aux_indices" not in extra else {}
    return dict(TINY, head=head, **TINY_TAPS[head], **aux, **extra)


def require_shared(path: Path) -> Path:
    """Skip when the shared reference files are absent, except under CI where that is a failure."""
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: the shared reference material must be present in CI")
        pytest.skip(f"{path} not available")
    return path


def load_golden(head: str) -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, meta)`` of ``official_<head>_tiny``."""
    from safetensors.torch import load_file

    tensors = load_file(str(require_shared(GOLDEN / f"official_{head}_tiny.safetensors")))
    meta = json.loads((GOLDEN / f"official_{head}_tiny.json").read_text())
    return tensors, meta


def golden_state_dict(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("state_dict.") :]: v for k, v in tensors.items() if k.startswith("state_dict.")}


def read_key_list(name: str) -> dict[str, torch.Tensor]:
    """A reference key list as meta tensors of the listed shapes (no memory)."""
    path = require_shared(KEYS / name)
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
