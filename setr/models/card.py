"""The model card a saved :class:`setr.SETR` carries: its template and the fields filled in from the
model's ``config`` and ``info`` (:class:`setr.ModelInfo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["CARD_FILE", "MODEL_CARD", "card_fields", "is_setr_card"]

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


def is_setr_card(path: Path) -> bool:
    """Whether ``path`` is a model card setr wrote (then a new save may replace it)."""
    try:
        return "library_name: setr-pytorch" in path.read_text(encoding="utf-8", errors="replace")[:2000]
    except OSError:
        return False


def card_fields(model: Any) -> dict[str, Any]:
    """The template's fields for ``model`` (a :class:`setr.SETR`), from its ``config`` and ``info``."""
    cfg, info = model.config, model.info
    release, protocol, loaded = info.release, info.protocol, info.loaded_from or {}
    zoo_name = info.full_name or info.architecture or f"SETR-{cfg.head}"
    checkpoint = Path(str(loaded.get("checkpoint", "?"))).name
    return dict(
        title=zoo_name,
        zoo_name=zoo_name,
        repo_or_dir=info.hub_repo or "<owner>/<repo>",
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
        classes_line=", ".join(info.class_names) if info.class_names else f"{cfg.num_classes} classes",
    )
