"""Hugging Face Hub methods of :class:`setr.SETR`: ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub``.

Built on ``huggingface_hub.PyTorchModelHubMixin``: a saved model is a folder (or Hub repository)
with ``config.json`` (the constructor arguments plus ``info``, the :class:`setr.ModelInfo`),
``model.safetensors`` and a model card ``README.md``. Loading goes through the one weight pipeline,
:mod:`setr.models.loading`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

from ..convert import write_safetensors
from ..dtypes import as_dtype
from ..errors import first_line
from ..files import atomic_staging
from .card import CARD_FILE, MODEL_CARD, card_fields, is_setr_card
from .config import SETRConfig
from .info import ModelInfo
from .loading import CONFIG_FILE, WEIGHTS_FILE, apply_loading_rules, build_and_load, reinit_classifiers

__all__ = [
    "CONFIG_FILE", "HUB_ERRORS", "WEIGHTS_FILE", "SETRHubMixin", "as_dtype", "first_line", "reinit_classifiers",
]  # fmt: skip

INFO_KEY = "info"
_OLD_INFO_KEY = "pretrained_cfg"  # what setr 0.1 called it
HUB_ERRORS = (EntryNotFoundError, LocalEntryNotFoundError, HfHubHTTPError, OSError)
"""What a failed Hub download raises."""


class SETRHubMixin(
    PyTorchModelHubMixin,
    library_name="setr-pytorch",
    tags=["image-segmentation", "semantic-segmentation", "setr", "vision-transformer"],
    pipeline_tag="image-segmentation",
    repo_url="https://github.com/setr-pytorch/setr",
    paper_url="https://arxiv.org/abs/2012.15840",
    model_card_template=MODEL_CARD,
):
    """Hub methods for :class:`setr.SETR` (``save_pretrained``, ``from_pretrained``, ``push_to_hub``)."""

    config: dict[str, Any]
    info: ModelInfo
    num_classes: int

    def _hub_config(self) -> dict[str, Any]:
        return {**self.config.to_dict(), INFO_KEY: self.info.to_dict()}

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> str | None:
        """Write ``config.json``, ``model.safetensors`` and a model card ``README.md`` to ``save_directory``.

        The files are written into a staging folder inside ``save_directory`` and then moved over
        the old ones, each whole (:func:`setr.files.atomic_staging`: modes as ``open()`` gives them
        under the umask): an interrupted save leaves the previous files intact. A
        ``README.md`` that is already there is kept (with a warning), not replaced by the card,
        unless setr wrote it.
        Accepts ``huggingface_hub``'s options (``push_to_hub=True, repo_id=...``).
        """
        kwargs.setdefault("config", self._hub_config())
        if kwargs.get("push_to_hub"):
            return super().save_pretrained(save_directory, **kwargs)
        with atomic_staging(save_directory, folder=True) as staging:
            super().save_pretrained(staging, **kwargs)
            card, destination = staging / CARD_FILE, Path(save_directory) / CARD_FILE
            if card.exists() and destination.exists() and not is_setr_card(destination):
                warnings.warn(
                    f"{destination} already exists and was kept: the model card was not written "
                    "(remove it and save again to get the card)",
                    stacklevel=2,
                )
                card.unlink()
        return None

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload ``save_pretrained``'s files to the Hub repository ``repo_id`` (one commit)."""
        kwargs.setdefault("config", self._hub_config())
        return super().push_to_hub(repo_id, **kwargs)

    def _save_pretrained(self, save_directory: Path) -> None:
        write_safetensors(self.state_dict(), save_directory / WEIGHTS_FILE, metadata={"library": "setr-pytorch"})

    def generate_model_card(self, *args: Any, **kwargs: Any):
        return super().generate_model_card(*args, **{**card_fields(self), **kwargs})

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any):
        """Load a model saved by ``save_pretrained``: a local folder or a Hub repository id.

        Args:
            pretrained_model_name_or_path: folder or ``owner/name`` on the Hub.
            **kwargs: ``revision``, ``cache_dir``, ``force_download``, ``local_files_only``,
                ``token``, ``aux_heads`` (keep the saved auxiliary heads, for training with their
                losses; default: dropped, see :meth:`SETR.drop_aux_heads`), and constructor
                overrides; a different ``num_classes`` loads everything else and re-initialises
                the classifiers (with a warning); a different ``in_chans`` adapts the patch
                embedding (with a warning). ``dtype`` (e.g. ``torch.bfloat16``) and ``device`` load
                the weights straight into that precision and place: the model is built on the
                ``meta`` device and receives the file's tensors, read one at a time, so no fp32
                or randomly initialised copy is ever held.

        Raises:
            FileNotFoundError: the folder or repository lacks ``config.json`` or ``model.safetensors``.
        """
        source = str(pretrained_model_name_or_path)
        path = Path(source).expanduser()
        if path.is_file():
            raise FileNotFoundError(
                f"{source} is a file: from_pretrained takes a folder written by save_pretrained or a Hub repo id; "
                "load a single checkpoint file with setr.create_model(name, checkpoint_path=...)"
            )
        looks_like_path = (
            isinstance(pretrained_model_name_or_path, os.PathLike)
            or source.startswith(("/", ".", "~"))
            or source.count("/") != 1
            or path.parent.is_dir()  # "runs/fnal": a typo in a local path, not a Hub id
        )
        if not path.exists() and looks_like_path:
            raise FileNotFoundError(f"no such folder: {source} (nor is it a Hub repo id of the form owner/name)")
        if os.path.isdir(source) and not (Path(source) / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{source} has no {CONFIG_FILE}: not a folder written by save_pretrained")
        try:
            return super().from_pretrained(source, **kwargs)
        except HUB_ERRORS as error:
            if isinstance(error, FileNotFoundError) and str(error).startswith(source):
                raise
            raise FileNotFoundError(
                f"could not load {source!r} (revision {kwargs.get('revision') or 'main'}): {first_line(error)}. "
                f"A setr repository holds {CONFIG_FILE} and {WEIGHTS_FILE}; check the id and revision, "
                "or that you are online (HF_HUB_OFFLINE=1 only reads the local cache)."
            ) from error

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        config: dict[str, Any] | None = None,
        map_location: str = "cpu",
        strict: bool = True,
        **model_kwargs: Any,
    ):
        if not config:
            raise FileNotFoundError(f"{model_id} has no {CONFIG_FILE}: not a setr model repository or folder")
        if os.path.isdir(model_id):
            weights = Path(model_id) / WEIGHTS_FILE
            if not weights.is_file():
                raise FileNotFoundError(f"{model_id} has no {WEIGHTS_FILE}")
        else:
            weights = Path(
                hf_hub_download(
                    repo_id=model_id,
                    filename=WEIGHTS_FILE,
                    revision=revision,
                    cache_dir=cache_dir,
                    force_download=force_download,
                    local_files_only=local_files_only,
                    token=token,
                )  # fmt: skip
            )
        if not strict:
            raise ValueError("strict loading cannot be turned off: setr loads every tensor or refuses the file")
        aux_heads = model_kwargs.pop("aux_heads", False)
        if not isinstance(aux_heads, bool):
            raise TypeError(f"aux_heads={aux_heads!r}: expected True or False")
        dtype = as_dtype(model_kwargs.pop("dtype", None))
        device = model_kwargs.pop("device", None) or map_location
        saved_classes = config.get("num_classes")
        wanted_classes = model_kwargs.pop("num_classes", saved_classes)
        model_config = _saved_config(config, model_kwargs, model_id).replace(num_classes=saved_classes)
        model = build_and_load(lambda **fields: cls(model_config, **fields), weights, "setr", dtype=dtype,
                               aux_heads=aux_heads)  # fmt: skip
        model.info = ModelInfo.from_dict(config.get(INFO_KEY, config.get(_OLD_INFO_KEY))).for_channels(
            model.config.in_chans
        )
        model.to(device=device, dtype=dtype)
        return apply_loading_rules(model, num_classes=wanted_classes, aux_heads=aux_heads, source=model_id).eval()


def _saved_config(saved: dict[str, Any], model_kwargs: dict[str, Any], source: str) -> SETRConfig:
    """The model config of a ``config.json`` with the caller's overrides.

    ``huggingface_hub`` passes the saved fields back among ``model_kwargs`` (and the whole file as
    ``config``), so an override is a field whose value differs from the saved one.
    """
    fields = SETRConfig.field_names()
    unknown = sorted(set(model_kwargs) - fields - set(saved) - {"config"})
    if unknown:
        raise TypeError(f"from_pretrained got unknown option(s) {', '.join(map(repr, unknown))}")
    overrides = {k: v for k, v in model_kwargs.items() if k in fields and (k not in saved or v != saved[k])}
    try:
        return SETRConfig.from_dict({k: v for k, v in saved.items() if k in fields}).replace(**overrides)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source}/{CONFIG_FILE}: {error}") from None
