"""The node key file: the challenge/ticket signing key that every node of one deployment
shares, and the key its rate-limit identifiers are derived from.

Format: one line with 32 random bytes as unpadded base64url (the current key), optionally a
second line with the previous key, which still verifies challenges and tickets during a
rotation. The file must not be readable by group or others (mode 0600 or stricter); the key
is never written anywhere else, the store included. Make one with:

    (umask 077; python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode())' > atopos.key)
"""  # noqa: E501

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

from atopos.crypto.base64url import b64url_decode
from atopos.crypto.tokens import KEY_BYTES, TokenKeys
from atopos.errors import InvalidInput

__all__ = ["NodeKeys", "load_key_file"]


@dataclasses.dataclass(frozen=True, slots=True)
class NodeKeys:
    current: bytes
    previous: bytes | None = None

    def token_keys(self) -> TokenKeys:
        return TokenKeys(self.current, self.previous)


def load_key_file(path: Path) -> NodeKeys:
    """Read and check a key file; every problem is one sentence (InvalidInput)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as handle:
            # The mode of the file we opened, not of whatever the path names a moment later.
            is_private = not stat.S_IMODE(os.fstat(handle.fileno()).st_mode) & 0o077
            raw = handle.read(4096) if is_private else b""
    except OSError as exc:
        reason = (exc.strerror or "it cannot be opened").lower()
        raise InvalidInput(f"The key file {path} cannot be read: {reason}.") from None
    if not is_private:
        raise InvalidInput(
            f"The key file {path} is readable by group or others; run chmod 600 on it."
        )
    try:
        lines = [line.strip() for line in raw.decode("ascii").splitlines() if line.strip()]
        keys = [b64url_decode(line) for line in lines]
    except (UnicodeDecodeError, ValueError):
        keys = []
    if not 1 <= len(keys) <= 2 or any(len(key) != KEY_BYTES for key in keys):
        raise InvalidInput(
            f"The key file {path} must hold one or two lines, each 32 bytes as base64url."
        )
    return NodeKeys(keys[0], keys[1] if len(keys) == 2 else None)
