"""The length limit of a Unix socket's path, said in one sentence instead of an OSError.

Linux keeps a socket's path in `sun_path`, 108 bytes with the terminating NUL. A longer path
fails in bind() or connect() with an error that names neither the path nor the cure; the
node's own sockets (the writer process's, the control socket of a tor it starts) live in the
temporary directory, which an operator can move."""

from __future__ import annotations

import os
from pathlib import Path

from atopos.errors import InvalidInput

__all__ = ["MAX_SOCKET_PATH_BYTES", "require_short_socket_path"]

MAX_SOCKET_PATH_BYTES = 107


def require_short_socket_path(path: Path, what: str) -> None:
    """InvalidInput naming `what` and the directory when `path` cannot be a socket's path."""
    if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
        raise InvalidInput(
            f"The path of {what}, {path}, is longer than the {MAX_SOCKET_PATH_BYTES} bytes a "
            f"Unix socket's path may have; set TMPDIR to a shorter directory, such as /tmp."
        )
