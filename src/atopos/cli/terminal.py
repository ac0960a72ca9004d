"""Whether a stream is a person's terminal: it decides prompts, hints and progress bars."""

from __future__ import annotations

__all__ = ["is_tty"]


def is_tty(stream: object) -> bool:
    """True when `stream` is a terminal; False for a file, a pipe, or no stream at all."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty()) if callable(isatty) else False
