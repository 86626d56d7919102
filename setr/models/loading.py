"""The one way weights go into a new SETR: build on the ``meta`` device, load strictly, apply the rules.

Every route ends here: a zoo release downloaded from the Hub, a Hub repository or folder written by
``save_pretrained``, a checkpoint file in any supported layout (``create_model``,
``setr.from_pretrained``, ``torch.hub``, ``setr convert`` and the other commands). So every route
refuses the same things and keeps the same rules:

- **strict**: :func:`setr.convert.load_checkpoint` accounts for every tensor, or the load fails;
  the model is built on the ``meta`` device and receives the file's tensors (no initialised copy);
- **auxiliary heads** (training-only) are kept only when asked for; our own files' are then not
  even built; asking for them from weights saved without them is refused;
- **classifiers**: a class count other than the weights' loads everything else and re-initialises
  the classifiers, with a warning;
- **provenance**: ``model.info.loaded_from`` names the file and its layout.

Resolving a zoo name to its Hub repository (which needs the zoo table) is :mod:`setr.zoo`'s part.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..convert import ConversionError, detect_format, load_checkpoint, read_checkpoint

if TYPE_CHECKING:
    from .segmentor import SETR

__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "apply_loading_rules", "build_and_load", "reinit_classifiers", "weights_file"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
_AUX = "aux_heads."


def weights_file(path: str | os.PathLike) -> Path:
    """The file to read: ``path`` itself, or the weights of a folder written by ``save_pretrained``.

    Raises:
        FileNotFoundError: a folder without ``model.safetensors``.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        if not (path / WEIGHTS_FILE).is_file():
            raise FileNotFoundError(
                f"{path} is a folder without {WEIGHTS_FILE}: pass a checkpoint file, or a folder written by "
                "save_pretrained"
            )
        return path / WEIGHTS_FILE
    return path


def build_and_load(
    build: Callable[..., SETR],
    source: str | os.PathLike | Mapping[str, torch.Tensor],
    fmt: str | None = None,
    *,
    dtype: torch.dtype | None = None,
    num_classes: int | None = None,
    aux_heads: bool = True,
    origin: str | os.PathLike | None = None,
) -> SETR:
    """Build a model on the ``meta`` device and fill it from ``source``, strictly.

    Args:
        build: makes the unloaded model; takes config fields that override its own
            (``num_classes``, ``aux_indices``).
        source: a checkpoint file (any supported layout) or a state dict already read.
        fmt: the layout when known (``setr``, ``official``, ``mmseg``, ``paddlevit``).
        dtype: read the floating-point weights in this dtype.
        num_classes: build with this many classes first; weights of another class count then load
            as saved (the caller re-initialises the classifiers, :func:`apply_loading_rules`).
        aux_heads: keep the weights' auxiliary heads. ``False`` leaves them out of a file of ours
            (never built); other layouts map them (every source tensor is accounted for) and the
            caller drops them.
        origin: the file a ``source`` state dict was read from (for the messages and provenance).

    Returns:
        The loaded model, with ``info.loaded_from`` set for a file.

    Raises:
        ConversionError: the weights do not fit (the message names the file).
    """
    is_file = isinstance(source, str | os.PathLike)
    state = read_checkpoint(source, dtype) if is_file else dict(source)
    origin = source if is_file else origin
    fmt = fmt or detect_format(state)
    extra: dict[str, Any] = {}
    if fmt == "setr" and (not aux_heads or not any(key.startswith(_AUX) for key in state)):
        state = {key: value for key, value in state.items() if not key.startswith(_AUX)}  # training-only
        extra["aux_indices"] = ()
    if num_classes is not None:
        extra["num_classes"] = num_classes
    where = f"{origin}: " if origin is not None else ""

    def attempt(**fields: Any) -> SETR:
        with torch.device("meta"):
            model = build(**{**extra, **fields})
        load_checkpoint(model, state, fmt, dtype=dtype)
        return model

    try:
        model = attempt()
    except ConversionError as error:
        found = getattr(error, "checkpoint_classes", None)
        if num_classes is None or found is None:
            raise ConversionError(f"{where}{error}") from None
        try:  # load as saved; the rules re-initialise the classifiers for num_classes
            model = attempt(num_classes=found)
        except ConversionError as other:
            raise ConversionError(f"{where}{other}") from None
    if origin is not None:
        model.info = model.info.replace(loaded_from={"checkpoint": str(origin), "format": fmt})
    return model


def apply_loading_rules(
    model: SETR, *, num_classes: int | None, aux_heads: bool, keep_built_aux: bool = False, source: str
) -> SETR:
    """The rules every loaded model goes through (see the module docstring).

    Args:
        model: a freshly loaded model.
        num_classes: the class count asked for (``None``: the weights').
        aux_heads: the caller asked for the auxiliary heads.
        keep_built_aux: keep whatever auxiliary heads the model has (the caller named them itself,
            ``aux_indices=...``).
        source: what was loaded, for the messages.

    Raises:
        ValueError: auxiliary heads asked for, and the weights have none.
    """
    if num_classes is not None and num_classes != model.num_classes:
        reinit_classifiers(model, num_classes, source)
    if keep_built_aux:
        return model
    if aux_heads and not model.aux_heads:
        raise ValueError(
            f"{source} was saved without auxiliary heads: load it with aux_heads=False and train "
            "without auxiliary losses"
        )
    if not aux_heads:
        model.drop_aux_heads()
    return model


def reinit_classifiers(model: SETR, num_classes: int, source: str) -> None:
    """Re-initialise every classifier for ``num_classes`` and warn (the encoder and the rest of the
    heads are kept; ``model.info`` forgets the class names, palette and release numbers)."""
    warnings.warn(
        f"{source}: the weights have {model.num_classes} classes; re-initialising the classifiers for "
        f"{num_classes} classes (the encoder and the rest of the heads are kept)",
        stacklevel=3,
    )
    model.reset_classifier(num_classes)
