"""The released SETR weights: one :class:`PretrainedCfg` per ``name.tag``.

Architectures know nothing of weights (``setr.models``); this table maps each released checkpoint
to its source, the Hugging Face Hub repository that hosts its safetensors, the numbers its authors
reported, and the few architecture options in which its framework differs from the official code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["HUB_ORGANISATION", "HUB_REPOS", "HUB_REVISION", "PRETRAINED", "PretrainedCfg", "hub_repo_id"]

HUB_ORGANISATION = "setr-pytorch"
"""Owner of the Hub repositories; one repository per ``name.tag``."""
HUB_REVISION = "v1"
"""The git tag every Hub repository is pinned to (created when the weights are pushed)."""

_GDRIVE = "https://drive.google.com/file/d/{}/view?usp=sharing"
_MMSEG = "https://download.openmmlab.com/mmsegmentation/v0.5/setr/{}"
_PADDLEVIT = "https://github.com/BR-IDL/PaddleViT/tree/develop/semantic_segmentation/configs/setr"


def hub_repo_id(name: str, tag: str) -> str:
    """The Hub repository of ``name.tag`` (from :data:`HUB_REPOS`)."""
    return HUB_REPOS[f"{name}.{tag}"]


@dataclass(frozen=True)
class PretrainedCfg:
    """One released checkpoint.

    Attributes:
        source: ``official`` (fudan-zvg/SETR), ``paddlevit`` (BR-IDL/PaddleViT) or ``mmseg``.
        original: where the original checkpoint can be downloaded by hand.
        miou: reported single-scale mIoU (%), from the source's own table.
        miou_ms: reported multi-scale + flip mIoU (%), if any.
        iters: training iterations.
        batch_size: total training batch.
        model_overrides: architecture options in which this release differs from the official
            network (e.g. mmseg's head topology); applied by ``create_model``.
        ms_ratios: multi-scale ratios of this release's ms+flip protocol when they differ from the
            dataset's default.
        notes: anything a user should know.
    """

    source: str
    original: str
    miou: float | None
    miou_ms: float | None = None
    iters: int = 80_000
    batch_size: int = 8
    model_overrides: dict[str, Any] = field(default_factory=dict)
    ms_ratios: tuple[float, ...] | None = None
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _official(drive_id: str, miou: float, miou_ms: float | None, iters: int, bs: int, **kw: Any) -> PretrainedCfg:
    return PretrainedCfg("official", _GDRIVE.format(drive_id), miou, miou_ms, iters, bs, **kw)


def _paddle(config: str, miou: float, miou_ms: float | None, iters: int, bs: int, head: str) -> PretrainedCfg:
    # PaddleViT drops the cls token before the blocks for every head, and its MLA forward runs only
    # three of the four auxiliary heads it builds (the fourth was never trained).
    overrides: dict[str, Any] = {"class_token": False}
    if head == "mla":
        overrides["aux_indices"] = [0, 1, 2]
    return PretrainedCfg(
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


def _mmseg(file: str, miou: float, miou_ms: float, iters: int, bs: int, overrides: dict[str, Any]) -> PretrainedCfg:
    return PretrainedCfg(
        "mmseg", _MMSEG.format(file), miou, miou_ms, iters, bs, dict(overrides),
        notes="mmsegmentation 0.x re-training of SETR with its own head topology.",
    )  # fmt: skip


_SS_FLIP = (0.5, 0.75, 1.0)  # official ADE20K Naive/MLA ms configs: in effect single scale + flip

PRETRAINED: dict[str, dict[str, PretrainedCfg]] = {
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
"""``name -> {tag: cfg}``; the first tag of each name is its default."""

HUB_REPOS: dict[str, str] = {
    f"{name}.{tag}": f"{HUB_ORGANISATION}/{name}.{tag}" for name, tags in PRETRAINED.items() for tag in tags
}
"""``name.tag -> Hub repository id``: the one table to edit when weights move (pinned to :data:`HUB_REVISION`)."""
