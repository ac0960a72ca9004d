"""Whether a person's terminal is there: it decides prompts, hints and progress bars."""

from __future__ import annotations

import os
import sys

__all__ = ["has_terminal", "is_tty"]


def is_tty(stream: object) -> bool:
    """True when `stream` is a terminal; False for a file, a pipe, or no stream at all."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty()) if callable(isatty) else False


def has_terminal() -> bool:
    """True when this process has a terminal to ask on, whatever stdin is.

    A passphrase prompt reads the terminal itself (as getpass, ssh and gpg do), so that
    stdin can carry the secret; without a terminal, getpass would fall back to stdin.
    """
    if sys.platform == "win32":
        return is_tty(sys.stdin)
    try:
        descriptor = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(descriptor)
    return True
