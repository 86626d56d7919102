"""Hugging Face Hub I/O: ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` and zoo downloads.

Built on ``huggingface_hub.PyTorchModelHubMixin``: a saved model is a folder (or Hub repository)
with ``config.json`` (the constructor arguments plus ``pretrained_cfg``), ``model.safetensors`` and
a model card ``README.md``. Loading is strict.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

if TYPE_CHECKING:
    from .models.segmentor import SETR

__all__ = [
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "PretrainedWeightsUnavailable",
    "SETRHubMixin",
    "convert_checkpoint",
    "from_pretrained",
    "load_pretrained_weights",
]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

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


class PretrainedWeightsUnavailable(RuntimeError):
    """The weights of a zoo name could not be obtained from the Hub; the message says what to do."""


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
    pretrained_cfg: dict[str, Any]

    def _hub_config(self) -> dict[str, Any]:
        return {**self.config, "pretrained_cfg": _jsonable(getattr(self, "pretrained_cfg", {}))}

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> str | None:
        """Write ``config.json``, ``model.safetensors`` and a model card ``README.md`` to ``save_directory``.

        Accepts ``huggingface_hub``'s options (``push_to_hub=True, repo_id=...``).
        """
        kwargs.setdefault("config", self._hub_config())
        return super().save_pretrained(save_directory, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload ``save_pretrained``'s files to the Hub repository ``repo_id`` (one commit)."""
        kwargs.setdefault("config", self._hub_config())
        return super().push_to_hub(repo_id, **kwargs)

    def _save_pretrained(self, save_directory: Path) -> None:
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(save_directory / WEIGHTS_FILE), metadata={"format": "pt", "library": "setr-pytorch"})

    def generate_model_card(self, *args: Any, **kwargs: Any):
        return super().generate_model_card(*args, **{**_card_fields(self), **kwargs})

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any):
        """Load a model saved by ``save_pretrained``: a local folder or a Hub repository id.

        Args:
            pretrained_model_name_or_path: folder or ``owner/name`` on the Hub.
            **kwargs: ``revision``, ``cache_dir``, ``force_download``, ``local_files_only``,
                ``token``, and constructor overrides; a different ``num_classes`` loads everything
                else and re-initialises the classifiers (with a warning).

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
        looks_like_path = isinstance(pretrained_model_name_or_path, os.PathLike) or source.startswith(("/", ".", "~"))
        if not path.exists() and (looks_like_path or source.count("/") > 1):
            raise FileNotFoundError(f"no such folder: {source} (nor is it a Hub repo id of the form owner/name)")
        if os.path.isdir(source) and not (Path(source) / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{source} has no {CONFIG_FILE}: not a folder written by save_pretrained")
        try:
            return super().from_pretrained(source, **kwargs)
        except (EntryNotFoundError, LocalEntryNotFoundError, HfHubHTTPError, OSError) as error:
            if isinstance(error, FileNotFoundError) and str(error).startswith(source):
                raise
            raise FileNotFoundError(
                f"could not load {source!r} (revision {kwargs.get('revision') or 'main'}): {_first_line(error)}. "
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
        saved_classes = config.get("num_classes")
        wanted_classes = model_kwargs.pop("num_classes", saved_classes)
        model = cls(**model_kwargs, num_classes=saved_classes)
        model.pretrained_cfg = dict(config.get("pretrained_cfg") or {})
        load_safetensors_strict(model, weights, map_location, strict)
        if wanted_classes != saved_classes:
            reinit_classifiers(model, wanted_classes, model_id)
        return model.eval()


def reinit_classifiers(model: SETR, num_classes: int, source: str) -> None:
    """Re-initialise every classifier for ``num_classes``, warn, and forget what no longer applies
    (class names, palette, the release's reported mIoU)."""
    warnings.warn(
        f"{source}: the weights have {model.num_classes} classes; re-initialising the classifiers for "
        f"{num_classes} classes (the encoder and the rest of the heads are kept)",
        stacklevel=3,
    )
    model.reset_classifier(num_classes)
    for key in ("class_names", "palette", "weights"):
        model.pretrained_cfg.pop(key, None)


def load_safetensors_strict(
    model: torch.nn.Module, path: str | os.PathLike, map_location: str = "cpu", strict: bool = True
) -> None:
    """Load ``path`` (our own key names) into ``model``; mismatches raise ``ConversionError`` naming them."""
    from .convert import convert_state_dict
    from .convert.io import read_checkpoint

    state = read_checkpoint(Path(path))
    if strict:
        state = convert_state_dict(state, model, "setr")
    model.load_state_dict(state, strict=strict)
    model.to(map_location)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0].rstrip(".") if text else type(error).__name__


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=list))


def _card_fields(model: Any) -> dict[str, Any]:
    cfg = model.config
    info = getattr(model, "pretrained_cfg", {}) or {}
    weights = info.get("weights") or {}
    name, tag = info.get("name"), info.get("tag")
    zoo_name = f"{name}.{tag}" if name and tag else (name or "setr_pup_vitl")
    classes = info.get("class_names")
    protocol = info.get("protocol")
    loaded = info.get("loaded_from") or {}
    return dict(
        title=zoo_name,
        zoo_name=zoo_name,
        repo_or_dir=info.get("hub_repo", "<owner>/<repo>"),
        head={"naive": "Naive", "pup": "PUP", "mla": "MLA"}[cfg["head"]],
        embed_dim=cfg["embed_dim"],
        depth=cfg["depth"],
        num_heads=cfg["num_heads"],
        img_size=cfg["img_size"],
        num_classes=cfg["num_classes"],
        dataset=info.get("dataset") or "a custom dataset",
        source=weights.get("source", "unknown"),
        weights_line=(
            f"{weights['source']} release, {weights['iters'] // 1000}k iterations, batch {weights['batch_size']}; "
            f"original: {weights['original']}"
            if weights
            else "trained or converted by the user"
        ),
        miou_line=(
            f"{weights.get('miou')} / {weights.get('miou_ms') or '–'} (as reported by the source)" if weights else "–"
        ),
        protocol_line=(
            f"sliding window {protocol['crop']}/{protocol['stride']}, ms+flip ratios {list(protocol['ms_ratios'])}"
            if protocol
            else "whole image"
        ),
        mean=info.get("mean"),
        std=info.get("std"),
        conversion_line=(
            f"converted by setr from the {loaded.get('format')} checkpoint {Path(str(loaded.get('checkpoint', '?'))).name} "
            f"(sha256 {loaded.get('sha256', '?')})"
            if loaded
            else "native setr weights"
        ),
        classes_line=", ".join(classes) if classes else f"{cfg['num_classes']} classes",
    )


def load_pretrained_weights(model: SETR, name: str, tag: str) -> None:
    """Download ``name.tag``'s safetensors from the Hub (pinned revision, cached) and load strictly.

    Raises:
        PretrainedWeightsUnavailable: the file cannot be had (offline, not published); the message
            says where the original checkpoint is and the command that converts it locally.
    """
    from .pretrained import HUB_REVISION, PRETRAINED, hub_repo_id

    repo_id = hub_repo_id(name, tag)
    try:
        path = hf_hub_download(repo_id=repo_id, filename=WEIGHTS_FILE, revision=HUB_REVISION)
    except (EntryNotFoundError, LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as error:
        original = PRETRAINED[name][tag].original
        raise PretrainedWeightsUnavailable(
            f"the weights of {name}.{tag} could not be downloaded from the Hugging Face Hub "
            f"({repo_id}, revision {HUB_REVISION}): {_first_line(error)}.\n"
            f"Download the original checkpoint from {original} and convert it locally:\n"
            f"    setr convert --model {name}.{tag} --checkpoint <downloaded file> --out {name}.{tag}\n"
            f"then load it with setr.from_pretrained('{name}.{tag}') or "
            f"setr.create_model('{name}.{tag}', checkpoint_path=<downloaded file>)."
        ) from error
    load_safetensors_strict(model, path)
    model.pretrained_cfg["hub_repo"] = repo_id
    model.pretrained_cfg["loaded_from"] = {"hub": repo_id, "revision": HUB_REVISION}


def from_pretrained(repo_id_or_dir: str | os.PathLike, **kwargs: Any) -> SETR:
    """``setr.SETR.from_pretrained``: load a folder or Hub repository written by ``save_pretrained``."""
    from .models.segmentor import SETR

    return SETR.from_pretrained(repo_id_or_dir, **kwargs)


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_checkpoint(
    model_name: str,
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    push_to_hub: str | None = None,
    **overrides: Any,
) -> SETR:
    """Convert any supported checkpoint of ``model_name`` into a ``save_pretrained`` folder.

    Args:
        model_name: zoo name (``name`` or ``name.tag``) describing the checkpoint's network.
        checkpoint: official, mmsegmentation, PaddleViT or setr checkpoint file.
        out_dir: destination folder (``config.json``, ``model.safetensors``, ``README.md``).
        push_to_hub: also upload the folder to this Hub repository.
        **overrides: constructor overrides (for checkpoints of non-standard sizes).
    """
    from .factory import create_model

    model = create_model(model_name, checkpoint_path=checkpoint, **overrides)
    loaded = model.pretrained_cfg["loaded_from"]
    loaded["sha256"] = sha256_of(loaded["checkpoint"])  # the file read (a folder's model.safetensors)
    if push_to_hub:
        model.pretrained_cfg["hub_repo"] = push_to_hub
    model.save_pretrained(out_dir)
    if push_to_hub:
        model.push_to_hub(push_to_hub)
    return model
