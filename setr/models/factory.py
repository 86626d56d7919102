"""Named SETR architectures: ``setr_{naive,pup,mla}_{vitl,vitb,deitb}`` and the dataset zoo names."""

from __future__ import annotations

from typing import Any

from .._registry import register_model
from ..data.meta import DATASETS
from .segmentor import SETR

__all__ = ["ARCHITECTURES", "DATASET_MODELS"]

_BACKBONES: dict[str, dict[str, Any]] = {
    "vitl": dict(embed_dim=1024, depth=24, num_heads=16),
    "vitb": dict(embed_dim=768, depth=12, num_heads=12),
    # DeiT-B/16 has ViT-B's shape; SETR discards its distillation token.
    "deitb": dict(embed_dim=768, depth=12, num_heads=12),
}
# The encoder taps of the official Base/DeiT configs (ViT-L uses the SETR defaults).
_BASE_TAPS: dict[str, dict[str, Any]] = {
    "naive": dict(decode_index=11, aux_indices=[2, 5, 8]),
    "pup": dict(decode_index=11, aux_indices=[4, 7, 9, 11]),
    "mla": dict(mla_indices=[2, 5, 8, 11]),
}
# The ImageNet weights each official config starts from (official_setr.md section 5), for timm.
ENCODER_INIT = {
    "vitl": "jx_vit_large_p16_384 (timm vit_large_patch16_384, release v0.1-vitjx)",
    "vitb": "jx_vit_base_p16_384 (timm vit_base_patch16_384, release v0.1-vitjx)",
    "deitb": "deit_base_distilled_patch16_384",
}

ARCHITECTURES: dict[str, dict[str, Any]] = {}
"""``name -> constructor kwargs`` of the bare architectures."""
DATASET_MODELS: dict[str, tuple[str, str]] = {}
"""``zoo name -> (architecture, dataset)``."""


def _architecture_kwargs(head: str, backbone: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(head=head, img_size=768, num_classes=19, **_BACKBONES[backbone])
    if backbone != "vitl":
        kwargs.update(_BASE_TAPS[head])
    return kwargs


def _make_entrypoint(name: str, kwargs: dict[str, Any], meta: dict[str, Any]):
    def entrypoint(**overrides: Any) -> SETR:
        model = SETR(**{**kwargs, **overrides})
        model.pretrained_cfg = dict(meta, architecture=name)
        return model

    entrypoint.__name__ = name
    entrypoint.__qualname__ = name
    entrypoint.__doc__ = f"SETR architecture ``{name}``; keyword arguments override its configuration."
    return entrypoint


for _head in ("naive", "pup", "mla"):
    for _backbone in _BACKBONES:
        _name = f"setr_{_head}_{_backbone}"
        ARCHITECTURES[_name] = _architecture_kwargs(_head, _backbone)
        register_model(_make_entrypoint(_name, ARCHITECTURES[_name], {"encoder_init": ENCODER_INIT[_backbone]}))

for _arch, _dataset in [
    *[(f"setr_{h}_vitl", d) for h in ("naive", "pup", "mla") for d in ("cityscapes", "ade20k", "pcontext")],
    ("setr_naive_vitb", "cityscapes"),  # the official Naive-Base release
]:
    _info = DATASETS[_dataset]
    _name = f"{_arch}_{_dataset}"
    # every SETR config trains on crops of its slide-window size
    _kwargs = dict(ARCHITECTURES[_arch], img_size=_info.protocol.crop, num_classes=_info.num_classes)
    DATASET_MODELS[_name] = (_arch, _dataset)
    _meta = {"encoder_init": ENCODER_INIT[_arch.rsplit("_", 1)[1]], "dataset": _dataset}
    register_model(_make_entrypoint(_name, _kwargs, _meta))
