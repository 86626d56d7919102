"""Converters from every SETR release format into ``setr.SETR`` state dicts, strict throughout."""

from ._common import ConversionError
from .load import convert_state_dict, detect_format, load_checkpoint
from .official import convert_official

__all__ = ["ConversionError", "convert_official", "convert_state_dict", "detect_format", "load_checkpoint"]
