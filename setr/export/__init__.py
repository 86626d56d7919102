"""Deployment: the plain SETR network exported to ONNX, a ``torch.export`` program or an
AOTInductor package, with the metadata a runner needs, and :class:`ExportedNetwork` to run them.

Needs the ``export`` extra (``pip install "setr-pytorch[export]"``) for ONNX; importing ``setr``
never does.
"""

from .exporter import EXPORT_FORMATS, EXPORT_PRECISIONS, check_export_precision, export_model
from .metadata import METADATA_KEY, export_metadata
from .requirements import MissingExtraError
from .runner import ExportedNetwork, ExportedShapeError, load_exported

__all__ = [
    "EXPORT_FORMATS", "EXPORT_PRECISIONS", "METADATA_KEY", "ExportedNetwork", "ExportedShapeError", "MissingExtraError",
    "check_export_precision", "export_metadata", "export_model", "load_exported",
]  # fmt: skip
