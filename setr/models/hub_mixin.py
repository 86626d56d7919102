"""Hugging Face Hub methods of :class:`setr.SETR`: ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub``.

Built on ``huggingface_hub.PyTorchModelHubMixin``: a saved model is a folder (or Hub repository)
with ``config.json`` (the constructor arguments plus ``info``, the :class:`setr.ModelInfo`, and
``model_type``), ``model.safetensors``, a model card ``README.md`` and ``preprocessor_config.json``
(the test resize and normalisation, made from ``info``: what transformers' ``AutoImageProcessor``
reads, see docs/transformers.md). Loading goes through the one weight pipeline,
:mod:`setr.models.loading`.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from huggingface_hub import (
    PyTorchModelHubMixin,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    try_to_load_from_cache,
)
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

from ..convert import write_safetensors
from ..dtypes import as_dtype
from ..errors import first_line
from ..files import atomic_staging
from .card import CARD_FILE, MODEL_CARD, card_fields, is_setr_card
from .config import MODEL_TYPE, SETRConfig, check_num_classes
from .info import ModelInfo
from .loading import CONFIG_FILE, WEIGHTS_FILE, apply_loading_rules, build_and_load, reinit_classifiers

__all__ = [
    "CONFIG_FILE", "HUB_ERRORS", "HUB_TIMEOUT_S", "MODEL_TYPE", "PREPROCESSOR_FILE", "WEIGHTS_FILE", "HubUnreachable",
    "SETRHubMixin", "as_dtype", "check_hub_reachable", "first_line", "hub_timeout", "looks_like_path",
    "preprocessor_config", "read_config_file", "reinit_classifiers",
]  # fmt: skip

INFO_KEY = "info"
_OLD_INFO_KEY = "pretrained_cfg"  # what setr 0.1 called it
PREPROCESSOR_FILE = "preprocessor_config.json"
HUB_ERRORS = (EntryNotFoundError, LocalEntryNotFoundError, HfHubHTTPError, OSError)
"""What a failed Hub download raises."""
HUB_TIMEOUT_S = 3.0
"""How long one attempt to reach the Hub waits (``HF_HUB_ETAG_TIMEOUT``, when set, instead)."""


class HubUnreachable(ConnectionError):
    """No answer from the Hub (no network, DNS failure, refused or timed-out connection)."""


def hub_timeout() -> float:
    """Seconds one attempt to reach the Hub may take: ``HF_HUB_ETAG_TIMEOUT`` when the user set it,
    else :data:`HUB_TIMEOUT_S` (huggingface_hub's own default is 10 s, then five retries)."""
    return float(hf_constants.HF_HUB_ETAG_TIMEOUT) if os.environ.get("HF_HUB_ETAG_TIMEOUT") else HUB_TIMEOUT_S


def check_hub_reachable(
    repo_id: str,
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> None:
    """Make one short attempt to reach the Hub before ``hf_hub_download`` fetches a file it does
    not have cached.

    ``hf_hub_download`` retries a file that is not cached five times on a network error, with
    waits of 1 to 8 s (about 24 s with no network) and 60 s timeouts. One HEAD request with
    :func:`hub_timeout` and no retry tells at once that the Hub cannot be reached. Nothing is
    changed in huggingface_hub's settings. Skipped offline (``HF_HUB_OFFLINE``, ``local_files_only``)
    and for a cached file, which ``hf_hub_download`` serves without retrying.

    Raises:
        HubUnreachable: the Hub did not answer (an answer, even an error, passes: the download then
            reports it).
    """
    if local_files_only or hf_constants.HF_HUB_OFFLINE:
        return
    try:
        if isinstance(try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, revision=revision), str):
            return
        url = hf_hub_url(repo_id, filename, revision=revision)
    except ValueError:  # not a valid repo id: hf_hub_download says so
        return
    try:
        get_hf_file_metadata(url, token=token, timeout=hub_timeout())
    except (HfHubHTTPError, ValueError):
        return  # the Hub answered
    except Exception as error:  # DNS failure, refused connection, timeout: httpx's transport errors
        raise HubUnreachable(f"no answer from {hf_constants.ENDPOINT} in one try ({first_line(error)})") from None


def looks_like_path(source: str | os.PathLike) -> bool:
    """Whether ``source`` names a local folder rather than a Hub repo id (``owner/name``): a path
    object, one starting with ``/``, ``.`` or ``~``, one without exactly one ``/``, or one whose
    parent folder exists (``runs/fnal`` is a typo of a local path). Such a name never goes to the Hub."""
    text = str(source)
    return (
        isinstance(source, os.PathLike)
        or text.startswith(("/", ".", "~"))
        or text.count("/") != 1
        or Path(text).expanduser().parent.is_dir()
    )


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A ``config.json`` as a dict; one line naming the file when it is not a JSON object.

    Raises:
        ValueError: unreadable, truncated or not a JSON object.
    """
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not a JSON file ({error.reason}); save the model again") from None
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path}: not valid JSON ({error.msg} at line {error.lineno} column {error.colno}: truncated or "
            "edited?); save the model again"
        ) from None
    if not isinstance(config, dict):
        raise ValueError(
            f"{path}: holds a JSON {type(config).__name__}, not an object of the model's settings; save the model again"
        )
    return config


def preprocessor_config(info: ModelInfo, in_chans: int) -> dict[str, Any]:
    """``preprocessor_config.json``: the single-scale test resize and normalisation of ``info``, as
    transformers' ``SetrImageProcessor`` takes them (``image_mean``/``image_std`` on the 0-255 scale,
    ``test_scale`` or ``short_side`` when the protocol resizes, ``num_channels``).

    Made from ``info`` each time a model is saved, by setr and through transformers alike: setr
    reads ``config.json`` only, transformers' ``AutoImageProcessor`` needs this file.
    """
    settings: dict[str, Any] = {
        "image_mean": [float(v) for v in info.mean],
        "image_std": [float(v) for v in info.std],
        "num_channels": int(in_chans),
    }
    protocol = info.protocol
    if protocol is not None and protocol.test_scale:
        settings["test_scale"] = [int(v) for v in protocol.test_scale]
    if protocol is not None and protocol.short_side:
        settings["short_side"] = int(protocol.short_side)
    return settings


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
        return {"model_type": MODEL_TYPE, **self.config.to_dict(), INFO_KEY: self.info.to_dict()}

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> str | None:
        """Write ``config.json``, ``model.safetensors``, a model card ``README.md`` and
        ``preprocessor_config.json`` (:func:`preprocessor_config`) to ``save_directory``.

        The files are written into a staging folder inside ``save_directory`` and then moved over
        the old ones, each whole (:func:`setr.files.atomic_staging`: modes as ``open()`` gives them
        under the umask): an interrupted save leaves the previous files intact. A
        ``README.md`` that is already there is kept (with a warning), not replaced by the card,
        unless setr wrote it.
        Accepts ``huggingface_hub``'s options (``push_to_hub=True, repo_id=...``).
        """
        kwargs.setdefault("config", self._hub_config())
        where = kwargs.get("repo_id") if kwargs.get("push_to_hub") else str(save_directory)
        kwargs["model_card_kwargs"] = {"repo_or_dir": where, **(kwargs.get("model_card_kwargs") or {})}
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
        kwargs["model_card_kwargs"] = {"repo_or_dir": repo_id, **(kwargs.get("model_card_kwargs") or {})}
        return super().push_to_hub(repo_id, **kwargs)

    def _save_pretrained(self, save_directory: Path) -> None:
        write_safetensors(self.state_dict(), save_directory / WEIGHTS_FILE, metadata={"library": "setr-pytorch"})
        settings = preprocessor_config(self.info, self.config.in_chans)
        # transformers' layout for this file, so that both libraries write it byte for byte alike
        text = json.dumps(settings, indent=2, sort_keys=True) + "\n"
        (save_directory / PREPROCESSOR_FILE).write_text(text, encoding="utf-8")

    def generate_model_card(self, *args: Any, repo_or_dir: str | None = None, **kwargs: Any):
        return super().generate_model_card(*args, **{**card_fields(self, repo_or_dir), **kwargs})

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
        if "num_classes" in kwargs:  # before anything is read or downloaded
            check_num_classes(kwargs["num_classes"])
        if not path.exists() and looks_like_path(pretrained_model_name_or_path):
            raise FileNotFoundError(f"no such folder: {source} (nor is it a Hub repo id of the form owner/name)")
        if path.is_dir():
            if not (path / CONFIG_FILE).is_file():
                raise FileNotFoundError(f"{source} has no {CONFIG_FILE}: not a folder written by save_pretrained")
            read_config_file(path / CONFIG_FILE)
        try:
            if not path.is_dir():
                _check_hub_config(source, kwargs)
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
                    etag_timeout=hub_timeout(),
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


def _check_hub_config(repo_id: str, kwargs: dict[str, Any]) -> None:
    """Reach the Hub once (:func:`check_hub_reachable`), then fetch and check the repository's
    ``config.json`` (huggingface_hub's loader then reads it from the cache)."""
    where = {k: kwargs.get(k) for k in ("revision", "cache_dir", "token")}
    local_files_only = bool(kwargs.get("local_files_only", False))
    check_hub_reachable(repo_id, CONFIG_FILE, local_files_only=local_files_only, **where)
    config_file = hf_hub_download(
        repo_id, CONFIG_FILE, force_download=bool(kwargs.get("force_download", False)),
        local_files_only=local_files_only, etag_timeout=hub_timeout(), **where,
    )  # fmt: skip
    try:
        read_config_file(config_file)
    except ValueError as error:
        raise ValueError(f"{repo_id}: {error}") from None


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
        kept = {k: v for k, v in saved.items() if k in fields or k == "model_type"}  # another model's is refused
        return SETRConfig.from_dict(kept).replace(**overrides)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source}/{CONFIG_FILE}: {error}") from None
