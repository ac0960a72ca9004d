"""A mix node's key file: its X25519 private key and key epoch, JSON, readable by the node's
user only (docs/mixnet.md, "Running nodes")."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.crypto.randomness import RandomBytes
from atopos.errors import InvalidInput

__all__ = ["NodeKey", "read_node_key", "write_node_key"]

NodeKey = tuple[int, X25519PrivateKey]


def write_node_key(path: Path, key_epoch: int, random_bytes: RandomBytes) -> X25519PrivateKey:
    """A new key for `key_epoch` in a new file at `path` (mode 0600; never overwrites)."""
    key = X25519PrivateKey.from_private_bytes(random_bytes(32))
    text = json.dumps(
        {"key_epoch": key_epoch, "private_key": b64url_encode(key.private_bytes_raw())}
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text + "\n")
    return key


def read_node_key(path: Path) -> NodeKey:
    """(key epoch, private key) from a key file; InvalidInput for anything else."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        epoch = data["key_epoch"]
        raw = b64url_decode(data["private_key"])
    except (OSError, ValueError, KeyError, TypeError):
        raise InvalidInput("The key file is not a readable mix node key.") from None
    if type(epoch) is not int or not 0 <= epoch < 2**32 or len(raw) != 32 or len(data) != 2:
        raise InvalidInput("The key file is not a readable mix node key.")
    return epoch, X25519PrivateKey.from_private_bytes(raw)
