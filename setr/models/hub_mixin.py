"""Hugging Face Hub methods of :class:`setr.SETR`: ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub``.

Built on ``huggingface_hub.PyTorchModelHubMixin``: a saved model is a folder (or Hub repository)
with ``config.json`` (the constructor arguments plus ``info``, the :class:`setr.ModelInfo`),
``model.safetensors`` and a model card ``README.md``. Loading goes through the one strict loader,
:func:`setr.convert.load_checkpoint`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

from ..convert import load_checkpoint, read_checkpoint, write_safetensors
from .info import ModelInfo

__all__ = [
    "CONFIG_FILE", "HUB_ERRORS", "WEIGHTS_FILE", "SETRHubMixin", "as_dtype", "first_line", "reinit_classifiers",
]  # fmt: skip

_DTYPE_NAMES = {
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "fp64": torch.float64, "float64": torch.float64,
}  # fmt: skip


def as_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """A floating-point ``torch.dtype`` from a dtype or its name (``"bf16"``, ``"float32"``, ...)."""
    if dtype is None or (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        return dtype
    if isinstance(dtype, str) and dtype.lower().removeprefix("torch.") in _DTYPE_NAMES:
        return _DTYPE_NAMES[dtype.lower().removeprefix("torch.")]
    raise TypeError(f"dtype={dtype!r}: expected a floating-point torch.dtype or one of {', '.join(_DTYPE_NAMES)}")


CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
INFO_KEY = "info"
_OLD_INFO_KEY = "pretrained_cfg"  # what setr 0.1 called it
HUB_ERRORS = (EntryNotFoundError, LocalEntryNotFoundError, HfHubHTTPError, OSError)
"""What a failed Hub download raises."""

MODEL_CARD = """---
{{ card_data }}
---

# {{ title }}

SETR (SEgmentation TRansformer, Zheng et al., CVPR 2021) with a **{{ head }}** decoder on a
ViT encoder ({{ embed_dim }}-wide, {{ depth }} blocks, {{ num_heads }} heads), for
**{{ dataset }}** ({{ num_classes }} classes, training crop {{ img_size }}x{{ img_size }}).

| | |
|---|---|
| weights | {{ weights_line }} |
| reported mIoU (single scale / ms+flip) | {{ miou_line }} |
| evaluation protocol | {{ protocol_line }} |
| input normalisation | RGB on 0-255, mean {{ mean }}, std {{ std }} |
| conversion | {{ conversion_line }} |

## Use

```python
import setr
model = setr.from_pretrained("{{ repo_or_dir }}")       # or setr.create_model("{{ zoo_name }}", pretrained=True)
```

Load with the [`setr-pytorch`](https://pypi.org/project/setr-pytorch/) library; loading is strict
(every tensor accounted for).

## Classes

{{ classes_line }}

## License

The weights keep the license of their source release ({{ source }}); the official SETR code is
MIT-licensed, mmsegmentation and PaddleViT are Apache-2.0.

## Citation

```bibtex
@inproceedings{zheng2021rethinking,
  title={Rethinking Semantic Segmentation from a Sequence-to-Sequence Perspective with Transformers},
  author={Zheng, Sixiao and Lu, Jiachen and Zhao, Hengshuang and Zhu, Xiatian and Luo, Zekun and Wang, Yabiao
          and Fu, Yanwei and Feng, Jianfeng and Xiang, Tao and Torr, Philip H.S. and Zhang, Li},
  booktitle={CVPR},
  year={2021}
}
```
"""


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
        return {**self.config, INFO_KEY: self.info.to_dict()}

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> str | None:
        """Write ``config.json``, ``model.safetensors`` and a model card ``README.md`` to ``save_directory``.

        The files are written into a temporary folder inside ``save_directory`` and then moved over
        the old ones, each whole: an interrupted save leaves the previous files intact. A
        ``README.md`` that is already there is kept (with a warning), not replaced by the card,
        unless setr wrote it.
        Accepts ``huggingface_hub``'s options (``push_to_hub=True, repo_id=...``).
        """
        kwargs.setdefault("config", self._hub_config())
        if kwargs.get("push_to_hub"):
            return super().save_pretrained(save_directory, **kwargs)
        target = Path(save_directory)
        target.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".setr-save-", dir=target))
        try:
            super().save_pretrained(staging, **kwargs)
            for written in sorted(staging.iterdir()):
                destination = target / written.name
                if written.name == CARD_FILE and destination.exists() and not _is_our_card(destination):
                    warnings.warn(
                        f"{destination} already exists and was kept: the model card was not written "
                        "(remove it and save again to get the card)",
                        stacklevel=2,
                    )
                    continue
                os.replace(written, destination)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return None

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload ``save_pretrained``'s files to the Hub repository ``repo_id`` (one commit)."""
        kwargs.setdefault("config", self._hub_config())
        return super().push_to_hub(repo_id, **kwargs)

    def _save_pretrained(self, save_directory: Path) -> None:
        write_safetensors(self.state_dict(), save_directory / WEIGHTS_FILE, metadata={"library": "setr-pytorch"})

    def generate_model_card(self, *args: Any, **kwargs: Any):
        return super().generate_model_card(*args, **{**_card_fields(self), **kwargs})

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
        aux_heads = model_kwargs.pop("aux_heads", False)
        if not isinstance(aux_heads, bool):
            raise TypeError(f"aux_heads={aux_heads!r}: expected True or False")
        dtype = as_dtype(model_kwargs.pop("dtype", None))
        device = model_kwargs.pop("device", None) or map_location
        saved_classes = config.get("num_classes")
        wanted_classes = model_kwargs.pop("num_classes", saved_classes)
        if strict:  # every tensor comes from the file: nothing to initialise
            with torch.device("meta"):
                model = cls(**model_kwargs, num_classes=saved_classes)
            load_checkpoint(model, weights, "setr", dtype=dtype)
        else:
            model = cls(**model_kwargs, num_classes=saved_classes)
            model.load_state_dict(read_checkpoint(weights, dtype), strict=False)
        model.info = ModelInfo.from_dict(config.get(INFO_KEY, config.get(_OLD_INFO_KEY))).for_channels(
            model.config["in_chans"]
        )
        model.to(device=device, dtype=dtype)
        if wanted_classes != saved_classes:
            reinit_classifiers(model, wanted_classes, model_id)
        if aux_heads and not model.aux_heads:
            raise ValueError(
                f"{model_id} was saved without auxiliary heads: load it with aux_heads=False and train "
                "without auxiliary losses"
            )
        if not aux_heads:
            model.drop_aux_heads()
        return model.eval()


def _is_our_card(path: Path) -> bool:
    """Whether ``path`` is a model card setr wrote (then a new save may replace it)."""
    try:
        return "library_name: setr-pytorch" in path.read_text(encoding="utf-8", errors="replace")[:2000]
    except OSError:
        return False


def reinit_classifiers(model: SETRHubMixin, num_classes: int, source: str) -> None:
    """Re-initialise every classifier for ``num_classes`` and warn (the encoder and the rest of the
    heads are kept; ``model.info`` forgets the class names, palette and release numbers)."""
    warnings.warn(
        f"{source}: the weights have {model.num_classes} classes; re-initialising the classifiers for "
        f"{num_classes} classes (the encoder and the rest of the heads are kept)",
        stacklevel=3,
    )
    model.reset_classifier(num_classes)


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0].rstrip(".") if text else type(error).__name__


def _card_fields(model: SETRHubMixin) -> dict[str, Any]:
    """The model card's fields, from ``model.config`` and ``model.info``."""
    cfg, info = model.config, model.info
    release, protocol, loaded = info.release, info.protocol, info.loaded_from or {}
    zoo_name = info.full_name or info.architecture or f"SETR-{cfg['head']}"
    checkpoint = Path(str(loaded.get("checkpoint", "?"))).name
    return dict(
        title=zoo_name,
        zoo_name=zoo_name,
        repo_or_dir=info.hub_repo or "<owner>/<repo>",
        head={"naive": "Naive", "pup": "PUP", "mla": "MLA"}[cfg["head"]],
        embed_dim=cfg["embed_dim"],
        depth=cfg["depth"],
        num_heads=cfg["num_heads"],
        img_size=cfg["img_size"],
        num_classes=cfg["num_classes"],
        dataset=info.dataset or "a custom dataset",
        source=release.source if release else "unknown",
        weights_line=(
            f"{release.source} release, {release.iters // 1000}k iterations, batch {release.batch_size}; "
            f"original: {release.original}"
            if release
            else "trained or converted by the user"
        ),
        miou_line=f"{release.miou} / {release.miou_ms or '–'} (as reported by the source)" if release else "–",
        protocol_line=(
            f"sliding window {protocol.crop}/{protocol.stride}, ms+flip ratios {list(protocol.ms_ratios)}"
            if protocol
            else "whole image"
        ),
        mean=list(info.mean),
        std=list(info.std),
        conversion_line=(
            f"converted by setr from the {loaded.get('format')} checkpoint {checkpoint} "
            f"(sha256 {loaded.get('sha256', '?')})"
            if "format" in loaded
            else "native setr weights"
        ),
        classes_line=", ".join(info.class_names) if info.class_names else f"{cfg['num_classes']} classes",
    )
