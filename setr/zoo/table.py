"""The model zoo in one table: every architecture, dataset model and release, each fact written once.

Architectures know nothing of weights (:mod:`setr.models`); this table maps names to constructor
arguments (the encoder taps are the model's own official defaults, :func:`setr.models.default_taps`),
dataset models to their dataset (classes, crop and test protocol come from
:data:`setr.data.meta.DATASETS`) and their official base learning rate, and each released
checkpoint (``name.tag``) to its source, the numbers its authors reported, and the few architecture
options in which its framework differs from the official code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..data.meta import DATASETS
from ..models import HEAD_TYPES, Release

__all__ = ["BACKBONES", "HUB_ORGANISATION", "HUB_REVISION", "ZOO", "Backbone", "ZooEntry", "hub_repo_id"]

HUB_ORGANISATION = "setr-pytorch"
"""Owner of the Hub repositories; one repository per ``name.tag`` (see :func:`hub_repo_id`)."""
HUB_REVISION = "v1"
"""The git tag every Hub repository is pinned to (created when the weights are pushed)."""

_GDRIVE = "https://drive.google.com/file/d/{}/view?usp=sharing"
_MMSEG = "https://download.openmmlab.com/mmsegmentation/v0.5/setr/{}"
_PADDLEVIT = "https://github.com/BR-IDL/PaddleViT/tree/develop/semantic_segmentation/configs/setr"


@dataclass(frozen=True)
class Backbone:
    """A ViT encoder size and the ImageNet weights the official configs start it from."""

    embed_dim: int
    depth: int
    num_heads: int
    encoder_init: str


BACKBONES: dict[str, Backbone] = {
    "vitl": Backbone(1024, 24, 16, "jx_vit_large_p16_384 (timm vit_large_patch16_384, release v0.1-vitjx)"),
    "vitb": Backbone(768, 12, 12, "jx_vit_base_p16_384 (timm vit_base_patch16_384, release v0.1-vitjx)"),
    # DeiT-B/16 has ViT-B's shape; SETR discards its distillation token.
    "deitb": Backbone(768, 12, 12, "deit_base_distilled_patch16_384"),
}


@dataclass(frozen=True)
class ZooEntry:
    """One name of :func:`setr.list_models`.

    Attributes:
        name: ``setr_{head}_{backbone}`` (an architecture) or ``..._{dataset}`` (a dataset model).
        architecture: the architecture name (itself for an architecture).
        head: ``naive``, ``pup`` or ``mla``.
        backbone: a key of :data:`BACKBONES`.
        dataset: a key of :data:`setr.data.meta.DATASETS`, or ``None``.
        base_lr: the official base learning rate of this head on this dataset (heads train at 10x).
        releases: ``tag -> Release``; the first tag is the default.
    """

    name: str
    architecture: str
    head: str
    backbone: str
    dataset: str | None = None
    base_lr: float | None = None
    releases: dict[str, Release] = field(default_factory=dict)

    @property
    def default_tag(self) -> str | None:
        return next(iter(self.releases), None)

    def kwargs(self) -> dict[str, Any]:
        """Constructor arguments of :class:`setr.SETR` (before a release's overrides)."""
        backbone = BACKBONES[self.backbone]
        kwargs: dict[str, Any] = dict(
            head=self.head, img_size=768, num_classes=19,
            embed_dim=backbone.embed_dim, depth=backbone.depth, num_heads=backbone.num_heads,
        )  # fmt: skip
        if self.dataset is not None:
            # every SETR config trains on crops of its slide-window size
            info = DATASETS[self.dataset]
            kwargs.update(img_size=info.protocol.crop, num_classes=info.num_classes)
        return kwargs


def hub_repo_id(name: str, tag: str) -> str:
    """The Hub repository that hosts the safetensors of ``name.tag``."""
    return f"{HUB_ORGANISATION}/{name}.{tag}"


def _official(drive_id: str, miou: float, miou_ms: float | None, iters: int, bs: int, **kw: Any) -> Release:
    return Release("official", _GDRIVE.format(drive_id), miou, miou_ms, iters, bs, **kw)


def _paddle(config: str, miou: float, miou_ms: float | None, iters: int, bs: int, head: str) -> Release:
    # PaddleViT drops the cls token before the blocks for every head, and its MLA forward runs only
    # three of the four auxiliary heads it builds (the fourth was never trained).
    overrides: dict[str, Any] = {"class_token": False}
    if head == "mla":
        overrides["aux_indices"] = [0, 1, 2]
    return Release(
        "paddlevit", f"{_PADDLEVIT} ({config})", miou, miou_ms, iters, bs, overrides,
        notes="PaddleViT weights (Google Drive / Baidu pan links in its README).",
    )  # fmt: skip


# mmseg's head topology (implementations.md sections 1.2-1.3): heads without conv bias, two
# upsamplings in Naive, an x2 after every PUP stage, 3 auxiliary heads, a 1x1 MLA classifier with
# align_corners=False, biased MLA aux classifiers.
_MMSEG_NAIVE_CITY = dict(head_conv_bias=False, decode_up_scales=[4], aux_up_scales=[4], aux_indices=[9, 14, 19])
_MMSEG_NAIVE_ADE = dict(_MMSEG_NAIVE_CITY, aux_up_scales=[4, 4])
_MMSEG_PUP = dict(head_conv_bias=False, decode_up_scales=[2, 2, 2, 2], aux_up_scales=[4, 4], aux_indices=[9, 14, 19])
_MMSEG_MLA = dict(mla_classifier_kernel=1, mla_align_corners=False, mla_aux_bias=True)


def _mmseg(file: str, miou: float, miou_ms: float, iters: int, bs: int, overrides: dict[str, Any]) -> Release:
    return Release(
        "mmseg", _MMSEG.format(file), miou, miou_ms, iters, bs, dict(overrides),
        notes="mmsegmentation 0.x re-training of SETR with its own head topology.",
    )  # fmt: skip


_SS_FLIP = (0.5, 0.75, 1.0)  # official ADE20K Naive/MLA ms configs: in effect single scale + flip

_RELEASES: dict[str, dict[str, Release]] = {
    # ------------------------------------------------------------------ Cityscapes (19 classes)
    "setr_naive_vitl_cityscapes": {
        "official_80k": _official("1dplB4wceJhyVRQfZR5AWODywMN90CY0h", 77.90, None, 80_000, 8),
        "official_40k": _official("1f3b7I7IwKx-hcr16afjcxkAyXyeNQCAz", 77.37, None, 40_000, 8),
        "paddlevit_80k": _paddle("SETR_Naive_Large_768x768_80k_cityscapes_bs_8", 77.31, 79.43, 80_000, 8, "naive"),
        "paddlevit_40k": _paddle("SETR_Naive_Large_768x768_40k_cityscapes_bs_8", 76.71, 79.03, 40_000, 8, "naive"),
        "mmseg_80k": _mmseg(
            "setr_naive_vit-large_8x1_768x768_80k_cityscapes_20211123_000505-20728e80.pth",
            78.10,
            80.22,
            80_000,
            8,
            _MMSEG_NAIVE_CITY,
        ),
    },
    "setr_pup_vitl_cityscapes": {
        "official_80k": _official("1469aYtEAuhT39BrHn0yOv1s71unF85JE", 79.34, None, 80_000, 8),
        "official_40k": _official("1DcZltdh6eHwmQ5BvCdHudJRgJUjPzS56", 78.39, None, 40_000, 8),
        "paddlevit_80k": _paddle("SETR_PUP_Large_768x768_80k_cityscapes_bs_8", 78.81, 80.43, 80_000, 8, "pup"),
        "paddlevit_40k": _paddle("SETR_PUP_Large_768x768_40k_cityscapes_bs_8", 77.92, 79.63, 40_000, 8, "pup"),
        "mmseg_80k": _mmseg(
            "setr_pup_vit-large_8x1_768x768_80k_cityscapes_20211122_155115-f6f37b8f.pth",
            79.21,
            81.02,
            80_000,
            8,
            _MMSEG_PUP,
        ),
    },
    "setr_mla_vitl_cityscapes": {
        "official_80k": _official("1ke6wcsCwP_J-p8sYriCZ3pC8G61bE0v_", 77.24, None, 80_000, 8),
        "official_40k": _official("18k26X-xM7BEQZUjzkvroeGV-6XwPgBqN", 76.65, None, 40_000, 8),
        "paddlevit_80k": _paddle("SETR_MLA_Large_768x768_80k_cityscapes_bs_8", 77.26, 79.27, 80_000, 8, "mla"),
        "paddlevit_40k": _paddle("SETR_MLA_Large_768x768_40k_cityscapes_bs_8", 76.70, 78.96, 40_000, 8, "mla"),
        "mmseg_80k": _mmseg(
            "setr_mla_vit-large_8x1_768x768_80k_cityscapes_20211119_101003-7f8dccbe.pth",
            77.00,
            79.59,
            80_000,
            8,
            _MMSEG_MLA,
        ),
    },
    "setr_naive_vitb_cityscapes": {
        "official_80k": _official("1vOD1-PGNfuM9IUvwnm2CrAXsPkadoyW8", 76.25, None, 80_000, 8),
        "official_40k": _official("1kGzdSLCazsbgZe0Y1Lo6sNwv9s5V3CAp", 75.54, None, 40_000, 8),
    },
    # ------------------------------------------------------------------ ADE20K (150 classes)
    "setr_naive_vitl_ade20k": {
        "official_160k": _official("17ZlPBcJRKO3c3XoAeNutrExIETu23qKY", 48.06, 48.80, 160_000, 16, ms_ratios=_SS_FLIP),
        "paddlevit_160k": _paddle("SETR_Naive_Large_512x512_160k_ade20k_bs_16", 47.57, 48.12, 160_000, 16, "naive"),
        "mmseg_160k": _mmseg(
            "setr_naive_512x512_160k_b16_ade20k_20210619_191258-061f24f5.pth",
            48.28,
            49.56,
            160_000,
            16,
            _MMSEG_NAIVE_ADE,
        ),
    },
    "setr_pup_vitl_ade20k": {
        "official_160k": _official("1hCeiz60ITgVPkWsrKwah8JnwM3G8VVL4", 48.62, 50.09, 160_000, 16),
        "paddlevit_160k": _paddle("SETR_PUP_Large_512x512_160k_ade20k_bs_16", 49.12, None, 160_000, 16, "pup"),
        "mmseg_160k": _mmseg(
            "setr_pup_512x512_160k_b16_ade20k_20210619_191343-7e0ce826.pth", 48.24, 49.99, 160_000, 16, _MMSEG_PUP
        ),
    },
    "setr_mla_vitl_ade20k": {
        "official_160k_bs8": _official(
            "1Zcaut5LAKYibjyeCcD3m-aG-ETWW6uhA", 47.79, 50.03, 160_000, 8, ms_ratios=_SS_FLIP
        ),
        "paddlevit_160k_bs8": _paddle("SETR_MLA_Large_512x512_160k_ade20k_bs_8", 47.80, None, 160_000, 8, "mla"),
        "mmseg_160k_bs8": _mmseg(
            "setr_mla_512x512_160k_b8_ade20k_20210619_191118-c6d21df0.pth", 47.34, 49.05, 160_000, 8, _MMSEG_MLA
        ),
        "mmseg_160k_bs16": _mmseg(
            "setr_mla_512x512_160k_b16_ade20k_20210619_191057-f9741de7.pth", 47.54, 49.37, 160_000, 16, _MMSEG_MLA
        ),
    },
    # ------------------------------------------------------------- Pascal Context (60 classes)
    "setr_naive_vitl_pcontext": {
        "official_80k": _official("140T7-wQ3UOzHA0-6pjO3lik_5Vi5RvqJ", 52.89, 53.61, 80_000, 16),
        "paddlevit_80k": _paddle(
            "SETR_Naive_Large_480x480_80k_pascal_context_bs_16", 52.06, 52.57, 80_000, 16, "naive"
        ),
    },
    "setr_pup_vitl_pcontext": {
        "official_80k": _official("1kXZYyqjA96d2DTL-tRvQjixfDBIZFIyR", 54.37, 55.27, 80_000, 16),
        "paddlevit_80k": _paddle("SETR_PUP_Large_480x480_80k_pascal_context_bs_16", 53.90, 54.53, 80_000, 16, "pup"),
    },
    "setr_mla_vitl_pcontext": {
        "official_80k_bs16": _official("1k5CwpKfpNUdAFWOuzwWz9PrRwiGS0Xu9", 55.01, 55.83, 80_000, 16),
        "official_80k_bs8": _official("1XvhUVIMcdcEYUYKudUcV99vOwhisYh61", 54.39, 55.39, 80_000, 8),
        "paddlevit_80k_bs16": _paddle(
            "SETR_MLA_Large_480x480_80k_pascal_context_bs_16", 55.01, 55.87, 80_000, 16, "mla"
        ),
        "paddlevit_80k_bs8": _paddle("SETR_MLA_Large_480x480_80k_pascal_context_bs_8", 54.39, 55.16, 80_000, 8, "mla"),
    },
}

# Official base lr per (head, dataset) (official_setr.md section 6); the Naive ViT-B configs use 0.01.
_BASE_LR = {
    ("naive", "cityscapes"): 0.01, ("pup", "cityscapes"): 0.01, ("mla", "cityscapes"): 0.002,
    ("naive", "ade20k"): 0.01, ("pup", "ade20k"): 0.001, ("mla", "ade20k"): 0.001,
    ("naive", "pcontext"): 0.01, ("pup", "pcontext"): 0.001, ("mla", "pcontext"): 0.001,
}  # fmt: skip
_DATASET_MODELS = [
    *[(f"setr_{h}_vitl", "cityscapes") for h in HEAD_TYPES],
    ("setr_naive_vitb", "cityscapes"),  # the official Naive-Base release
    *[(f"setr_{h}_vitl", d) for d in ("ade20k", "pcontext") for h in HEAD_TYPES],
]


def _build_zoo() -> dict[str, ZooEntry]:
    zoo: dict[str, ZooEntry] = {}
    for head in HEAD_TYPES:
        for backbone in BACKBONES:
            name = f"setr_{head}_{backbone}"
            zoo[name] = ZooEntry(name, name, head, backbone)
    for architecture, dataset in _DATASET_MODELS:
        arch = zoo[architecture]
        name = f"{architecture}_{dataset}"
        releases = _RELEASES.get(name, {})
        zoo[name] = ZooEntry(
            name, architecture, arch.head, arch.backbone, dataset, _BASE_LR[arch.head, dataset], releases
        )
    unknown = set(_RELEASES) - set(zoo)
    if unknown:
        raise AssertionError(f"releases of unknown zoo names: {sorted(unknown)}")
    return zoo


ZOO: dict[str, ZooEntry] = _build_zoo()
"""Every zoo name (architectures and dataset models) -> its :class:`ZooEntry`."""
