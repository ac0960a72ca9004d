"""Plaintext on its way to a person's terminal: shown safely, or not shown at all.

A terminal obeys what it is sent: an escape sequence in a secret from a stranger can
rewrite the screen, set the window title, or on some terminals answer back as if typed,
and bidi controls reorder what is displayed. So, as `less`, `gh` and `git` do, control
characters other than newline and tab are shown visibly instead (`\\x1b`, `\\u202e`). A
pipe or a file gets the exact bytes; only a terminal is protected.

Content that is not text (a NUL byte, or not UTF-8, in its first block) is not dumped on
the terminal at all: it goes to the `divert` stream instead, which the caller provides.
"""

from __future__ import annotations

import codecs
import unicodedata
from collections.abc import Callable
from typing import BinaryIO, Protocol

__all__ = ["BytesSink", "TerminalText", "is_text", "visible_text"]

# Bidi controls: they reorder what a terminal displays (U+202E makes "txt.exe" read
# "exe.txt"), whereas other format characters (ZWJ in emoji, ZWNJ in Persian) are text.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_KEPT_CONTROLS = frozenset("\n\t")
# How much of the start decides whether content is text (as git and grep look at the start).
_SNIFF_BYTES = 8192


class BytesSink(Protocol):
    def write(self, data: bytes) -> object: ...


def visible_text(text: str) -> str:
    """`text` with every control character other than newline and tab (C0, DEL, C1, line
    and paragraph separators, bidi controls) replaced by its escape, e.g. `\\x1b`."""
    return "".join(_visible(ch) for ch in text)


def _visible(ch: str) -> str:
    if ch in _KEPT_CONTROLS:
        return ch
    if ch in _BIDI_CONTROLS or unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
        code = ord(ch)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return ch


def is_text(start: bytes) -> bool:
    """Whether content beginning with `start` is text: no NUL byte and valid UTF-8 (a
    character cut at the end of `start` does not count against it)."""
    sample = start[:_SNIFF_BYTES]
    if b"\0" in sample:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        return False
    return True


class TerminalText:
    """A binary stream for plaintext bound to a terminal (`terminal`): text is written
    with its controls made visible; content that is not text goes to `divert()` instead
    (called once, on the first write), and `is_diverted` says so afterwards."""

    def __init__(self, terminal: BinaryIO, divert: Callable[[], BytesSink]) -> None:
        self._terminal = terminal
        self._divert = divert
        self._diverted: BytesSink | None = None
        self._is_decided = False
        # Undecodable bytes after the first block are shown as \xNN, not dropped.
        self._decoder = codecs.getincrementaldecoder("utf-8")("backslashreplace")

    @property
    def is_diverted(self) -> bool:
        return self._diverted is not None

    def write(self, data: bytes) -> None:
        if not self._is_decided:
            self._is_decided = True
            if not is_text(data):
                self._diverted = self._divert()
        if self._diverted is not None:
            self._diverted.write(data)
            return
        self._show(self._decoder.decode(data))

    def flush(self) -> None:
        if self._diverted is None:
            self._show(self._decoder.decode(b"", final=True))
            self._terminal.flush()

    def _show(self, text: str) -> None:
        if text:
            self._terminal.write(visible_text(text).encode("utf-8"))
