"""Opening and reading a local file to seal it, without trusting what sits at its path."""

from __future__ import annotations

import contextlib
import mimetypes
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from atopos.crypto.envelope import Metadata
from atopos.errors import InvalidInput

__all__ = [
    "READ_BYTES",
    "local_content",
    "open_regular_file",
    "open_without_waiting",
    "portable_name",
    "read_exactly",
]

# How much of a file is read (and sealed) at a time.
READ_BYTES = 256 * 1024


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


def open_regular_file(path: Path) -> tuple[BinaryIO, int]:
    """`path` open for reading, and its size; InvalidInput unless it is a regular file.

    The size goes into the envelope up front, so it must be known and must not change. A
    FIFO does not block (open_without_waiting); reads block again once it is checked.
    """
    descriptor, info = open_without_waiting(path)
    try:
        if not stat.S_ISREG(info.st_mode):
            raise InvalidInput(f"{path} is not a regular file; pipe anything else to stdin.")
        if sys.platform != "win32":
            import fcntl

            mode = fcntl.fcntl(descriptor, fcntl.F_GETFL)
            fcntl.fcntl(descriptor, fcntl.F_SETFL, mode & ~os.O_NONBLOCK)
        return os.fdopen(descriptor, "rb"), info.st_size
    except BaseException:
        os.close(descriptor)
        raise


def read_exactly(file: BinaryIO, size: int) -> Iterator[bytes]:
    """`size` bytes of `file` in pieces; InvalidInput when it shrinks or grows meanwhile
    (the size is already in the envelope)."""
    left = size
    while left:
        piece = file.read(min(READ_BYTES, left))
        if not piece:
            raise InvalidInput("The file shrank while it was being sent.")
        left -= len(piece)
        yield piece
    if file.read(1):
        raise InvalidInput("The file grew while it was being sent.")


def portable_name(name: str) -> str | None:
    """The file name for the envelope's metadata, or None when it has no UTF-8 form."""
    # A file name that is not valid Unicode (undecodable bytes on POSIX) has no UTF-8 form
    # for the envelope; the reader then picks a fallback name.
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return name or None


def local_content(
    content: bytes | Path, stack: contextlib.ExitStack
) -> tuple[Metadata, Iterator[bytes]]:
    """What `content` is and its plaintext in pieces of READ_BYTES: bytes are a text secret;
    a Path is a file, opened on `stack` and read as the pieces are taken."""
    if isinstance(content, Path):
        file, size = open_regular_file(content)
        stack.enter_context(file)
        metadata = Metadata(
            kind="file",
            size=size,
            name=portable_name(content.name),
            media_type=mimetypes.guess_type(content.name, strict=False)[0],
        )
        return metadata, read_exactly(file, size)
    return Metadata(kind="text", size=len(content)), _slices(content)


def _slices(content: bytes) -> Iterator[bytes]:
    with memoryview(content) as view:
        for start in range(0, len(content), READ_BYTES):
            yield bytes(view[start : start + READ_BYTES])
