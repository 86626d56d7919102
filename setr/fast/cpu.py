"""What this CPU can do, as its kernel reports it."""

from __future__ import annotations

import functools
from pathlib import Path

__all__ = ["cpu_features"]


@functools.cache
def cpu_features() -> frozenset[str]:
    """The CPU's feature flags (``avx512_bf16``, ``avx512_vnni``, ...) from ``/proc/cpuinfo``;
    empty where that file does not exist."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()
