"""The model card a saved :class:`setr.SETR` carries: its template and the fields filled in from the
model's ``config`` and ``info`` (:class:`setr.ModelInfo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["CARD_FILE", "MODEL_CARD", "card_fields", "is_release", "is_setr_card"]

CARD_FILE = "README.md"

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
| encoder initialisation | {{ encoder_line }} |
| reported mIoU (single scale / ms+flip) | {{ miou_line }} |
| evaluation protocol | {{ protocol_line }} |
| input normalisation | RGB on 0-255, mean {{ mean }}, std {{ std }} |
| conversion | {{ conversion_line }} |

## Use

```python
import setr
{{ use_code }}
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


def is_setr_card(path: Path) -> bool:
    """Whether ``path`` is a model card setr wrote (then a new save may replace it)."""
    try:
        return "library_name: setr-pytorch" in path.read_text(encoding="utf-8", errors="replace")[:2000]
    except OSError:
        return False


def is_release(info: Any) -> bool:
    """Whether ``info`` (a :class:`setr.ModelInfo`) describes a zoo release's own weights: the
    release is named and the weights were loaded from the Hub or from a segmentation checkpoint
    (``setr convert`` of the original file). A model built by a zoo name without weights carries
    the release's settings, not its weights."""
    loaded = info.loaded_from or {}
    return (
        info.release is not None
        and info.tag is not None
        and ("hub" in loaded or loaded.get("format") not in (None, "timm"))
    )


def card_fields(model: Any, repo_or_dir: str | None = None) -> dict[str, Any]:
    """The template's fields for ``model`` (a :class:`setr.SETR`), from its ``config`` and ``info``.

    Args:
        model: the model the card describes.
        repo_or_dir: where it is saved (a folder, or a Hub repository id): the "Use" snippet loads it.
    """
    cfg, info = model.config, model.info
    protocol, loaded = info.protocol, info.loaded_from or {}
    release = info.release if is_release(info) else None
    zoo_name = (info.full_name if release else info.name) or info.architecture or f"SETR-{cfg.head}"
    checkpoint = Path(str(loaded.get("checkpoint", "?"))).name
    target = repo_or_dir or info.hub_repo or "<folder or owner/repo>"
    use_code = f'model = setr.from_pretrained("{target}")'
    if release is not None:
        use_code += f'  # or setr.create_model("{zoo_name}", pretrained=True)'
    return dict(
        title=zoo_name,
        use_code=use_code,
        head={"naive": "Naive", "pup": "PUP", "mla": "MLA"}[cfg.head],
        embed_dim=cfg.embed_dim,
        depth=cfg.depth,
        num_heads=cfg.num_heads,
        img_size=cfg.img_size,
        num_classes=cfg.num_classes,
        dataset=info.dataset or "a custom dataset",
        source=release.source if release else "unknown",
        weights_line=(
            f"{release.source} release, {release.iters // 1000}k iterations, batch {release.batch_size}; "
            f"original: {release.original}"
            if release
            else "trained or converted by the user"
        ),
        encoder_line=_encoder_line(info, release, loaded, checkpoint),
        miou_line=f"{release.miou} / {release.miou_ms or '–'} (as reported by the source)" if release else "–",
        protocol_line=_protocol_line(protocol, cfg.img_size),
        mean=list(info.mean),
        std=list(info.std),
        conversion_line=(
            f"converted by setr from the {loaded.get('format')} checkpoint {checkpoint} "
            f"(sha256 {loaded.get('sha256', '?')})"
            if "format" in loaded
            else "native setr weights"
        ),
        classes_line=", ".join(info.class_names) if info.class_names else f"{cfg.num_classes} classes",
    )


def _encoder_line(info: Any, release: Any, loaded: dict[str, str], checkpoint: str) -> str:
    """What the encoder started from, only as far as setr knows it: ``info.encoder_init`` is the
    official recipe's choice, true of a release's weights, not of any model built by its name."""
    if release is not None and info.encoder_init:
        return f"{info.encoder_init} (the {release.source} recipe)"
    if loaded.get("format") == "timm":
        return f"ImageNet weights {checkpoint}"
    return "not recorded by setr (trained from scratch, or from an encoder the user loaded)"


def _protocol_line(protocol: Any, img_size: int) -> str:
    """``model.info.protocol`` in words; without one, what :class:`setr.Predictor` falls back to."""
    if protocol is None:
        return f"none saved: setr slides a window of the training crop ({img_size}x{img_size}), no test resize"
    if protocol.mode == "whole":
        window = "whole image"
    else:
        window = f"sliding window {protocol.crop}/{protocol.stride}"
    if protocol.short_side is not None:
        resize = f"short side resized to {protocol.short_side}"
    elif protocol.test_scale is not None:
        resize = f"test resize {protocol.test_scale[0]}x{protocol.test_scale[1]} (long x short)"
    else:
        resize = "no test resize"
    return f"{window}, {resize}, ms+flip ratios {list(protocol.ms_ratios)}"
