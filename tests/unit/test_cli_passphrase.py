"""Passphrase files: exactly one trailing newline is dropped; empty is a usage error."""

from __future__ import annotations

from pathlib import Path

import pytest

from atopos.cli.passphrase import read_passphrase_file
from atopos.errors import InvalidInput


@pytest.mark.parametrize(
    ("content", "passphrase"),
    [
        (b"correct horse", "correct horse"),
        (b"correct horse\n", "correct horse"),
        (b"correct horse\r\n", "correct horse"),
        (b"two\n\n", "two\n"),
        (b" spaced \n", " spaced "),
        ("pässwörd\n".encode(), "pässwörd"),
    ],
)
def test_one_trailing_newline_is_dropped(tmp_path: Path, content: bytes, passphrase: str) -> None:
    path = tmp_path / "pw"
    path.write_bytes(content)
    assert read_passphrase_file(path) == passphrase


@pytest.mark.parametrize("content", [b"", b"\n", b"\r\n"])
def test_empty_is_a_usage_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "pw"
    path.write_bytes(content)
    with pytest.raises(InvalidInput, match="empty"):
        read_passphrase_file(path)


def test_not_utf8_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(InvalidInput, match="UTF-8"):
        read_passphrase_file(path)
