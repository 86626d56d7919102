"""Decode and auxiliary heads of SETR."""

from .mla import MLAAuxHead, MLAHead, MLANeck
from .up_head import NaiveHead, PUPAuxHead, PUPHead, UpHead

__all__ = ["MLAAuxHead", "MLAHead", "MLANeck", "NaiveHead", "PUPAuxHead", "PUPHead", "UpHead"]
