"""Turning an exception into the one line a message quotes."""

from __future__ import annotations

__all__ = ["first_line"]


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message without its final full stop; its type's name when
    the message is empty."""
    text = str(error).strip()
    return text.splitlines()[0].rstrip(".") if text else type(error).__name__
