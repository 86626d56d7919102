"""SETR modules: encoder, heads and segmentor."""

from .encoder import ViTEncoder
from .heads import MLAAuxHead, MLAHead, MLANeck, NaiveHead, PUPAuxHead, PUPHead, UpHead
from .patch_embed import PatchEmbed
from .segmentor import SETR

__all__ = [
    "MLAAuxHead", "MLAHead", "MLANeck", "NaiveHead", "PUPAuxHead", "PUPHead", "PatchEmbed", "SETR",
    "UpHead", "ViTEncoder",
]  # fmt: skip
