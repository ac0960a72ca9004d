"""Opening a local file without trusting what sits at its path."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["open_without_waiting"]


def open_without_waiting(path: Path) -> tuple[int, os.stat_result]:
    """A read-only descriptor of `path` and the fstat of what it opened; the caller closes it.

    O_NONBLOCK keeps a FIFO put at `path` from blocking the open (waiting for a writer that
    may never come); checking the descriptor, not the path, means what is read is what was
    checked. OSError as os.open raises it.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_BINARY", 0)  # Windows: no newline translation
    descriptor = os.open(path, flags)
    try:
        return descriptor, os.fstat(descriptor)
    except BaseException:
        os.close(descriptor)
        raise
