"""Optional dependencies of the exporters and runners, imported only when used."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(ImportError):
    """An optional dependency is missing; the message names the extra that installs it."""


def require(module: str, purpose: str, extra: str = "export") -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` saying how to install it (the ``extra``
    of setr-pytorch that brings it: ``export`` for ONNX, ``openvino`` for OpenVINO and NNCF)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"{purpose} needs the '{module}' package: pip install \"setr-pytorch[{extra}]\""
        ) from None
