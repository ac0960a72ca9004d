"""Plaintext shown on a terminal: controls made visible, content that is not text kept off."""

from __future__ import annotations

import io

import pytest

from atopos.cli.output import HeldStream
from atopos.cli.terminal_text import TerminalText, is_text, visible_text

# Accents, CJK, an emoji joined by ZWJ and Persian with a ZWNJ: format characters that are text.
WITH_JOINERS = "r\u00e9sum\u00e9 \u65e5\u672c \U0001f469\u200d\U0001f4bb \u0632\u200c\u0647"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain\ttext\nsecond line", "plain\ttext\nsecond line"),
        ("\x1b[2J\x1b]0;title\x07", "\\x1b[2J\\x1b]0;title\\x07"),
        ("over\rwrite", "over\\x0dwrite"),
        ("back\bspace\x7fdel", "back\\x08space\\x7fdel"),
        ("c1 \x9b31m csi", "c1 \\x9b31m csi"),
        ("invoice\u202efdp.exe", "invoice\\u202efdp.exe"),
        ("isolate\u2066x\u2069", "isolate\\u2066x\\u2069"),
        ("line\u2028sep", "line\\u2028sep"),
        (
            "r\u00e9sum\u00e9 \u65e5\u672c \U0001f469\u200d\U0001f4bb \u0632\u200c\u0647",
            "r\u00e9sum\u00e9 \u65e5\u672c \U0001f469\u200d\U0001f4bb \u0632\u200c\u0647",
        ),  # ZWJ (emoji) and ZWNJ (Persian) are text
    ],
)
def test_controls_are_made_visible(text: str, shown: str) -> None:
    assert visible_text(text) == shown


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (b"hello\n", True),
        ("résumé".encode(), True),
        ("é".encode()[:1], True),  # a character cut at the end of the block
        (b"\x1b[31mred", True),  # text, shown escaped
        (b"PK\x03\x04\x00\x00", False),
        (b"\x89PNG\r\n\x1a\n\x00", False),
        (b"latin-1 caf\xe9 au lait", False),
    ],
)
def test_text_is_told_from_other_content(start: bytes, expected: bool) -> None:
    assert is_text(start) is expected


def test_text_reaches_the_terminal_escaped_across_writes() -> None:
    screen = io.BytesIO()
    diverted: list[io.BytesIO] = []
    terminal = TerminalText(screen, divert=lambda: diverted.append(io.BytesIO()) or diverted[0])
    data = "a\x1b[2Jé\u202e".encode()
    for index in range(len(data)):  # byte by byte: characters and escapes cut anywhere
        terminal.write(data[index : index + 1])
    terminal.flush()
    assert screen.getvalue() == "a\\x1b[2Jé\\u202e".encode()
    assert not diverted
    assert not terminal.is_diverted


def test_bytes_that_are_not_utf8_later_on_are_shown_as_escapes() -> None:
    screen = io.BytesIO()
    terminal = TerminalText(screen, divert=io.BytesIO)
    terminal.write(b"fine\n")
    terminal.write(b"then \xff\xfe")
    terminal.flush()
    assert screen.getvalue() == b"fine\nthen \\xff\\xfe"


def test_content_that_is_not_text_never_reaches_the_terminal() -> None:
    screen = io.BytesIO()
    elsewhere = io.BytesIO()
    terminal = TerminalText(screen, divert=lambda: elsewhere)
    held = HeldStream(terminal, limit=4)
    payload = b"\x00\x01\x02\x1b[2J binary" * 10
    held.write(payload[:3])
    held.write(payload[3:])
    held.release()
    assert screen.getvalue() == b""
    assert elsewhere.getvalue() == payload
    assert terminal.is_diverted
