"""Where revealed plaintext goes: a file (`-o PATH`) or stdout.

Plaintext is written to a mode-0600 temporary file beside its destination and renamed into
place only after the envelope proved whole, so a failed or interrupted reveal never leaves
partial plaintext behind and never clobbers a file unless `--force` says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import tempfile
import unicodedata
from pathlib import Path
from types import TracebackType
from typing import Protocol

from atopos.errors import InvalidInput

__all__ = [
    "FALLBACK_FILE_NAME",
    "TEXT_FILE_NAME",
    "HeldStream",
    "OutputTarget",
    "ProvisionalFile",
    "WritableStream",
    "safe_file_name",
]

FALLBACK_FILE_NAME = "secret.bin"
TEXT_FILE_NAME = "secret.txt"
_MAX_NAME_BYTES = 255  # NAME_MAX of common file systems
_MAX_ALTERNATIVES = 100


def safe_file_name(name: str | None) -> str:
    """`name` made safe to create in a directory the reader chose, else the fallback.

    The name comes from the sender, inside the envelope: it must not climb out of the
    chosen directory ("..", "a/b", "C:\\x"), hide NUL or control characters (bidi controls
    included) that would garble a terminal or disguise the name, or be too long to create;
    such names fall back to `secret.bin`. Leading dots are dropped, so that `-o ~` cannot
    create a hidden file that shells and tools read, such as `.bashrc`: `.bash_profile`
    is saved as `bash_profile`.
    """
    if (
        not name
        or any(sep in name for sep in ("/", "\\", "\0"))
        or any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name)
        or len(name.encode("utf-8", "surrogatepass")) > _MAX_NAME_BYTES
    ):
        return FALLBACK_FILE_NAME
    # Spaces too: " .bashrc" would otherwise come back to a hidden file after a trim.
    visible = name.lstrip(". ")
    return visible or FALLBACK_FILE_NAME


@dataclasses.dataclass(frozen=True, slots=True)
class OutputTarget:
    """A `-o PATH`: a file to create, or a directory that receives the sender's file name."""

    directory: Path
    file_name: str | None  # None: decided by the secret's metadata
    overwrite: bool

    @classmethod
    def resolve(cls, path: Path, *, overwrite: bool) -> OutputTarget:
        """Check the target before a view is spent: afterwards a mistake costs the secret."""
        if path.is_dir():
            return cls(path, None, overwrite)
        if not path.parent.is_dir():
            raise InvalidInput(f"The directory {path.parent} does not exist.")
        if not overwrite and (path.exists() or path.is_symlink()):
            raise InvalidInput(f"{path} already exists; pass --force to overwrite it.")
        return cls(path.parent, path.name, overwrite)

    def destination(self, kind: str, sender_name: str | None) -> Path:
        if self.file_name is not None:
            return self.directory / self.file_name
        name = safe_file_name(sender_name) if kind == "file" else TEXT_FILE_NAME
        return self.directory / name


class ProvisionalFile:
    """A private temporary file that becomes `destination` on `commit`, or vanishes."""

    def __init__(self, directory: Path) -> None:
        # mkstemp creates the file with mode 0600 and O_EXCL, whatever the umask.
        descriptor, name = tempfile.mkstemp(dir=directory, prefix=".atopos-", suffix=".part")
        self._path = Path(name)
        self._file = os.fdopen(descriptor, "wb")
        self._is_committed = False

    def __enter__(self) -> ProvisionalFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._is_committed:
            self.discard()

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def discard(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    def commit(self, destination: Path, *, overwrite: bool) -> Path:
        """Move the content to `destination`, or to "name (n).ext" beside it when that
        exists and `overwrite` is false; returns where it went."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        if overwrite:
            os.replace(self._path, destination)
            self._is_committed = True
            return destination
        for candidate in _alternatives(destination):
            if _move_without_clobbering(self._path, candidate):
                self._is_committed = True
                return candidate
        raise InvalidInput(f"{destination} and its numbered alternatives already exist.")


def _alternatives(destination: Path) -> list[Path]:
    stem, suffix = destination.stem, destination.suffix
    return [destination] + [
        destination.with_name(f"{stem} ({number}){suffix}")
        for number in range(1, _MAX_ALTERNATIVES)
    ]


def _move_without_clobbering(source: Path, destination: Path) -> bool:
    """Rename `source` to `destination` unless that exists (then False).

    A hard link fails atomically when the name is taken, where a rename would replace it.
    """
    try:
        os.link(source, destination)
    except FileExistsError:
        return False
    except OSError as error:
        # No hard links on this file system (some network or FAT mounts): check, then rename.
        if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if destination.exists() or destination.is_symlink():
            return False
        os.rename(source, destination)
        return True
    source.unlink()
    return True


class WritableStream(Protocol):
    """Where HeldStream passes plaintext: a binary stream, or anything that writes like one."""

    def write(self, data: bytes, /) -> object: ...

    def flush(self) -> object: ...


class HeldStream:
    """Passes plaintext to `stream`, holding back the first `limit` bytes until `release`.

    A reveal's content is proven only at its end; holding the start means a typical (text)
    secret is printed whole or not at all, while a large file still streams. `stream` is
    flushed once, at `release`.
    """

    def __init__(self, stream: WritableStream, limit: int = 1024 * 1024) -> None:
        self._stream = stream
        self._limit = limit
        self._held: bytearray | None = bytearray()

    def write(self, data: bytes) -> None:
        if self._held is None:
            self._stream.write(data)
            return
        self._held += data
        if len(self._held) > self._limit:
            self._stream.write(bytes(self._held))
            self._held = None

    def release(self) -> None:
        if self._held:
            self._stream.write(bytes(self._held))
        self._held = None
        self._stream.flush()
