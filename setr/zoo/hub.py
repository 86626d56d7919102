"""Weights from the Hugging Face Hub: zoo downloads, ``setr.from_pretrained`` and ``convert_checkpoint``.

The ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` methods themselves belong to
:class:`setr.SETR` (:mod:`setr.models.hub_mixin`); this module adds what needs the zoo table.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import hf_hub_download

from ..convert import load_checkpoint
from ..errors import first_line
from ..models import SETR
from ..models.hub_mixin import HUB_ERRORS, check_hub_reachable, hub_timeout
from ..models.loading import WEIGHTS_FILE
from .table import HUB_REVISION, ZOO, hub_repo_id

__all__ = ["PretrainedWeightsUnavailable", "download_release", "from_pretrained", "load_release_weights", "sha256_of"]


class PretrainedWeightsUnavailable(RuntimeError):
    """The weights of a zoo name could not be obtained from the Hub; the message says what to do."""


def download_release(name: str, tag: str) -> tuple[Path, dict[str, Any]]:
    """The safetensors of ``name.tag`` from the Hub (pinned revision, cached), and the ``model.info``
    fields that say where they came from.

    With no network this answers in one short attempt (:func:`setr.models.hub_mixin.check_hub_reachable`),
    not after huggingface_hub's retries.

    Raises:
        PretrainedWeightsUnavailable: the file cannot be had (offline, not published); the message,
            one line, says where the original checkpoint is and the command that converts it locally.
    """
    repo_id = hub_repo_id(name, tag)
    try:
        check_hub_reachable(repo_id, WEIGHTS_FILE, revision=HUB_REVISION)
        path = hf_hub_download(
            repo_id=repo_id, filename=WEIGHTS_FILE, revision=HUB_REVISION, etag_timeout=hub_timeout()
        )
    except (*HUB_ERRORS, ValueError) as error:
        original = ZOO[name].releases[tag].original
        raise PretrainedWeightsUnavailable(
            f"the weights of {name}.{tag} could not be downloaded from the Hugging Face Hub "
            f"({repo_id}, revision {HUB_REVISION}): {first_line(error)}. Download the original checkpoint "
            f"from {original} and convert it locally: setr convert --model {name}.{tag} --checkpoint "
            f"<downloaded file> --out {name}.{tag}; then load it with setr.from_pretrained('{name}.{tag}') or "
            f"setr.create_model('{name}.{tag}', checkpoint_path=<downloaded file>)"
        ) from error
    return Path(path), {"hub_repo": repo_id, "loaded_from": {"hub": repo_id, "revision": HUB_REVISION}}


def load_release_weights(model: SETR, name: str, tag: str, dtype: torch.dtype | None = None) -> None:
    """Fill an existing ``model`` with ``name.tag``'s released weights, strictly (setr 0.2's route;
    :func:`setr.create_model` with ``pretrained=True`` builds and fills a new one)."""
    path, provenance = download_release(name, tag)
    load_checkpoint(model, path, "setr", dtype=dtype)
    model.info = model.info.replace(**provenance)


def from_pretrained(repo_id_or_dir: str | os.PathLike, **kwargs: Any) -> SETR:
    """Load a folder or Hub repository written by ``save_pretrained`` (``SETR.from_pretrained``).

    Args:
        repo_id_or_dir: a local folder or ``owner/name`` on the Hub.
        **kwargs: ``revision``, ``cache_dir``, ``local_files_only``, ``token``, and constructor
            overrides; a different ``num_classes`` re-initialises the classifiers (with a warning).
    """
    return SETR.from_pretrained(repo_id_or_dir, **kwargs)


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
