"""The sizes of Atopos' ids, tokens, keys and AES-GCM parameters, spelled once.

The server, the client and the crypto code all import them from here; the wire formats
that carry them are in docs/protocol/ (api.md, envelope.md, access.md).
"""

from __future__ import annotations

__all__ = [
    "AES_GCM_NONCE_BYTES",
    "AES_GCM_TAG_BYTES",
    "CHALLENGE_SALT_BYTES",
    "DEVICE_SECRET_BYTES",
    "DEVICE_SEED_BYTES",
    "LINK_KEY_BYTES",
    "MANAGE_TOKEN_BYTES",
    "NODE_KEY_BYTES",
    "SECRET_ID_BYTES",
    "SECRET_ID_CHARS",
    "STAMP_SALT_BYTES",
]

# A secret's id: 128 random bits chosen by the server; 22 characters of unpadded base64url.
SECRET_ID_BYTES = 16
SECRET_ID_CHARS = (SECRET_ID_BYTES * 4 + 2) // 3
# The bearer token that lets a secret's creator see its status and delete it.
MANAGE_TOKEN_BYTES = 32
# The key in a share link's fragment, made on the creator's device.
LINK_KEY_BYTES = 32
# The random share a device-bound envelope seals to the device's X25519 key.
DEVICE_SECRET_BYTES = 32
# A device's seed, from which its Ed25519 and X25519 keys are derived.
DEVICE_SEED_BYTES = 32
# The random bytes that make each signed challenge unique.
CHALLENGE_SALT_BYTES = 8
# The random bytes a reader puts in each stamp it makes (crypto/stamps.py).
STAMP_SALT_BYTES = 16
# A node key: it signs challenges and tickets and derives rate-limit identifier keys.
NODE_KEY_BYTES = 32
# AES-256-GCM as every Atopos format uses it: 96-bit nonces, full 128-bit tags.
AES_GCM_NONCE_BYTES = 12
AES_GCM_TAG_BYTES = 16
