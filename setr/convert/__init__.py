"""Converters from every SETR release format into ``setr.SETR`` state dicts, strict throughout."""

from ._common import ConversionError
from .io import read_checkpoint, write_safetensors
from .load import FORMATS, convert_state_dict, detect_format, load_checkpoint
from .mmseg import convert_mmseg
from .official import convert_official
from .paddle import convert_paddlevit
from .pdparams import read_pdparams
from .streaming import read_safetensors_as
from .timm import load_timm_encoder

__all__ = [
    "FORMATS",
    "ConversionError",
    "convert_mmseg",
    "convert_official",
    "convert_paddlevit",
    "convert_state_dict",
    "detect_format",
    "load_checkpoint",
    "load_timm_encoder",
    "read_checkpoint",
    "read_pdparams",
    "read_safetensors_as",
    "write_safetensors",
]
