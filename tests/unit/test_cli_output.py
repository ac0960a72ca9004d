"""Revealed plaintext on disk: safe names, private temp files, no partial output."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest

from atopos.cli.output import (
    FALLBACK_FILE_NAME,
    TEXT_FILE_NAME,
    HeldStream,
    OutputTarget,
    ProvisionalFile,
    safe_file_name,
)
from atopos.errors import InvalidInput


@pytest.mark.parametrize("name", ["report.pdf", "résumé final.txt", "a" * 255, "-rf", "a.b.c"])
def test_plain_names_are_kept(name: str) -> None:
    assert safe_file_name(name) == name


@pytest.mark.parametrize(
    ("name", "saved_as"),
    [
        (".env", "env"),
        (".bash_profile", "bash_profile"),
        ("..bashrc", "bashrc"),
        (" .ssh", "ssh"),
        (". .profile", "profile"),
        ("...", FALLBACK_FILE_NAME),
        (". . ", FALLBACK_FILE_NAME),
    ],
)
def test_hidden_names_lose_their_leading_dots(name: str, saved_as: str) -> None:
    # Issue 19: `-o ~` must not let a sender write ~/.bash_profile.
    assert safe_file_name(name) == saved_as


@pytest.mark.parametrize(
    "name",
    [
        None,
        "",
        ".",
        "..",
        "../evil",
        "a/b",
        "/etc/passwd",
        "..\\evil",
        "C:\\evil",
        "nul\0byte",
        "line\nbreak",
        "escape\x1b[2J",
        "right\u202eleft",
        "a" * 256,
        "é" * 128,  # 256 bytes in UTF-8
    ],
)
def test_unsafe_names_fall_back(name: str | None) -> None:
    assert safe_file_name(name) == FALLBACK_FILE_NAME


def test_directory_target_uses_the_senders_name(tmp_path: Path) -> None:
    target = OutputTarget.resolve(tmp_path, overwrite=False)
    assert target.destination("file", "report.pdf") == tmp_path / "report.pdf"
    assert target.destination("file", "../report.pdf") == tmp_path / FALLBACK_FILE_NAME
    assert target.destination("file", ".bash_profile") == tmp_path / "bash_profile"
    assert target.destination("text", "ignored") == tmp_path / TEXT_FILE_NAME


def test_file_target_keeps_its_name(tmp_path: Path) -> None:
    target = OutputTarget.resolve(tmp_path / "out.txt", overwrite=False)
    assert target.destination("file", "report.pdf") == tmp_path / "out.txt"


def test_existing_file_is_refused_before_reveal(tmp_path: Path) -> None:
    (tmp_path / "out.txt").write_text("keep me")
    with pytest.raises(InvalidInput, match="--force"):
        OutputTarget.resolve(tmp_path / "out.txt", overwrite=False)
    assert OutputTarget.resolve(tmp_path / "out.txt", overwrite=True).overwrite


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        OutputTarget.resolve(tmp_path / "nope" / "out.txt", overwrite=False)


def test_provisional_file_is_private_and_renamed_on_commit(tmp_path: Path) -> None:
    with ProvisionalFile(tmp_path) as provisional:
        provisional.write(b"plain")
        (temp,) = tmp_path.iterdir()
        assert stat.S_IMODE(temp.stat().st_mode) == 0o600
        saved = provisional.commit(tmp_path / "out", overwrite=False)
    assert saved == tmp_path / "out"
    assert saved.read_bytes() == b"plain"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert list(tmp_path.iterdir()) == [saved]


def test_failure_leaves_nothing_behind(tmp_path: Path) -> None:
    def reveal_that_fails() -> None:
        with ProvisionalFile(tmp_path) as provisional:
            provisional.write(b"partial plaintext")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        reveal_that_fails()
    assert list(tmp_path.iterdir()) == []


def test_commit_never_clobbers_without_overwrite(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("old")
    (tmp_path / "a (1).txt").write_text("old too")
    with ProvisionalFile(tmp_path) as provisional:
        provisional.write(b"new")
        saved = provisional.commit(tmp_path / "a.txt", overwrite=False)
    assert saved == tmp_path / "a (2).txt"
    assert saved.read_bytes() == b"new"
    assert (tmp_path / "a.txt").read_text() == "old"


def test_commit_with_overwrite_replaces(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("old")
    with ProvisionalFile(tmp_path) as provisional:
        provisional.write(b"new")
        saved = provisional.commit(tmp_path / "a.txt", overwrite=True)
    assert saved.read_bytes() == b"new"
    assert len(list(tmp_path.iterdir())) == 1


def test_held_stream_holds_small_output_until_release() -> None:
    sink = io.BytesIO()
    held = HeldStream(sink, limit=10)
    held.write(b"12345")
    assert sink.getvalue() == b""
    held.release()
    assert sink.getvalue() == b"12345"


def test_held_stream_streams_large_output() -> None:
    sink = io.BytesIO()
    held = HeldStream(sink, limit=4)
    held.write(b"123")
    held.write(b"456")
    held.write(b"789")
    assert sink.getvalue() == b"123456789"
    held.release()
    assert sink.getvalue() == b"123456789"
