"""Choosing a device: :func:`resolve_device` is the one place a device name is read and checked."""

from __future__ import annotations

import torch

__all__ = ["available_devices", "resolve_device"]

_EXAMPLES = "cpu, cuda, cuda:1, mps"


def available_devices() -> list[str]:
    """The devices this machine has, as names ``torch.device`` takes: ``cpu``, ``cuda:0`` ..., ``mps``, ..."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        names.append("mps")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        names += [f"xpu:{index}" for index in range(xpu.device_count())]
    return names


def _count(kind: str) -> int:
    """How many devices of ``kind`` this machine has (``meta`` is always there: one)."""
    if kind in ("cpu", "meta"):
        return 1
    if kind == "cuda":
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    if kind == "mps":
        return int(torch.backends.mps.is_available())
    backend = getattr(torch, kind, None)  # xpu, ...
    available = getattr(backend, "is_available", None)
    return backend.device_count() if callable(available) and available() else 0


def resolve_device(device: str | torch.device | None = None, flag: str | None = None) -> torch.device:
    """The ``torch.device`` for ``device``, checked to exist on this machine; ``None`` means
    ``cuda`` where there is a CUDA device, else ``cpu``.

    Args:
        device: a name (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``) or a ``torch.device``.
        flag: how the caller's user wrote the option, for the message (``"--device"``); default
            ``device=...``.

    Raises:
        ValueError: one line naming the device asked for and the devices this machine has, e.g.
            ``device='cuda': this machine has no CUDA device; devices here: cpu``.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    asked = f"{flag} {device}" if flag else f"device={str(device)!r}"
    here = ", ".join(available_devices())
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{asked}: not a device name (e.g. {_EXAMPLES}); devices here: {here}") from None
    count = _count(resolved.type)
    kind = resolved.type.upper() if len(resolved.type) <= 4 else resolved.type
    if count == 0:
        raise ValueError(f"{asked}: this machine has no {kind} device; devices here: {here}")
    if resolved.index is not None and resolved.type not in ("cpu", "meta") and resolved.index >= count:
        have = f"{count} {kind} device{'s' if count > 1 else ''}"
        raise ValueError(f"{asked}: this machine has {have}, numbered from 0; devices here: {here}")
    return resolved
