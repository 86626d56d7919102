"""The SETR network as the official code computes it: config, encoder, heads, segmentor (torch and timm only)."""

from .backbone import SETRBackbone
from .config import SETRConfig
from .encoder import PatchEmbed, ViTEncoder
from .heads import MLAAuxHead, MLAHead, MLANeck, NaiveHead, PUPAuxHead, PUPHead, UpHead
from .info import ModelInfo, Release
from .segmentor import HEAD_TYPES, SETR, default_taps, official_aux_indices

__all__ = [
    "HEAD_TYPES", "MLAAuxHead", "MLAHead", "MLANeck", "ModelInfo", "NaiveHead", "PUPAuxHead", "PUPHead",
    "PatchEmbed", "Release", "SETR", "SETRBackbone", "SETRConfig", "UpHead", "ViTEncoder", "default_taps",
    "official_aux_indices",
]  # fmt: skip
