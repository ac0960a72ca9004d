"""Extra Lock: local secrets at rest, wrapped with a passphrase or a key (docs/protocol/device.md).

A *lock record* is what the local store writes for a secret it keeps (the device seed,
session state): a short header naming how the secret is protected, then the secret itself
(mode 0, no lock) or its AES-256-GCM ciphertext under a key from Argon2id(passphrase)
(mode 1, Extra Lock) or under a given key (mode 2, session state under a seed-derived key).

The whole header and a purpose label are the AAD, so a record cannot be moved to another
purpose (a session entry presented as the seed) nor its cost or salt changed unnoticed.
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from atopos.crypto.errors import DecryptionFailed, PassphraseRequired
from atopos.crypto.kdf import (
    ARGON2_FIELDS,
    ARGON2_SALT_BYTES,
    Argon2Params,
    derive_passphrase_key,
    pack_argon2_fields,
    unpack_argon2_fields,
)
from atopos.crypto.randomness import RandomBytes, draw
from atopos.crypto.sizes import AES_GCM_NONCE_BYTES, AES_GCM_TAG_BYTES

__all__ = [
    "EXTRA_LOCK_ARGON2",
    "LOCK_KEY_BYTES",
    "MODE_KEY",
    "MODE_PASSPHRASE",
    "MODE_PLAIN",
    "lock_mode",
    "lock_plain",
    "lock_with_key",
    "lock_with_passphrase",
    "unlock",
]

MAGIC = b"ATLK"
VERSION = 1
MODE_PLAIN = 0
MODE_PASSPHRASE = 1
MODE_KEY = 2
LOCK_KEY_BYTES = 32
_NONCE_BYTES = AES_GCM_NONCE_BYTES
_TAG_BYTES = AES_GCM_TAG_BYTES
_PREFIX = struct.Struct(">4sBB")

# Unlocking happens once per command on the user's own machine, and the record sits on a
# disk an attacker may copy: four times RFC 9106's second recommendation in memory (256 MiB,
# t = 3, p = 4), about 0.3-0.6 s on a 2-core laptop. Each record names its own cost.
EXTRA_LOCK_ARGON2 = Argon2Params(memory_kib=262144, iterations=3, lanes=4)


def _aad(header: bytes, purpose: str) -> bytes:
    return header + b"\x00" + purpose.encode("utf-8")


def lock_plain(secret: bytes) -> bytes:
    """Mode 0: the secret as is, behind the header (protected only by the file's mode or
    the OS keyring)."""
    return _PREFIX.pack(MAGIC, VERSION, MODE_PLAIN) + bytes(secret)


def lock_with_passphrase(
    secret: bytes,
    passphrase: str,
    *,
    purpose: str,
    random_bytes: RandomBytes,
    params: Argon2Params = EXTRA_LOCK_ARGON2,
) -> bytes:
    """Mode 1: AES-256-GCM under Argon2id(NFC(passphrase)). Draws the salt, then the nonce."""
    if not passphrase:
        raise ValueError("the passphrase must not be empty")
    salt = draw(random_bytes, ARGON2_SALT_BYTES)
    nonce = draw(random_bytes, _NONCE_BYTES)
    key = derive_passphrase_key(passphrase, salt, params)
    header = (
        _PREFIX.pack(MAGIC, VERSION, MODE_PASSPHRASE) + pack_argon2_fields(params, salt) + nonce
    )
    return header + AESGCM(key).encrypt(nonce, bytes(secret), _aad(header, purpose))


def lock_with_key(secret: bytes, key: bytes, *, purpose: str, random_bytes: RandomBytes) -> bytes:
    """Mode 2: AES-256-GCM under a 32-byte key, with a random nonce."""
    if len(key) != LOCK_KEY_BYTES:
        raise ValueError(f"the key must be {LOCK_KEY_BYTES} bytes")
    nonce = draw(random_bytes, _NONCE_BYTES)
    header = _PREFIX.pack(MAGIC, VERSION, MODE_KEY) + nonce
    return header + AESGCM(bytes(key)).encrypt(nonce, bytes(secret), _aad(header, purpose))


def lock_mode(record: bytes) -> int:
    """The record's mode (MODE_PLAIN, MODE_PASSPHRASE or MODE_KEY); DecryptionFailed if it is
    not a lock record this code can read."""
    if len(record) < _PREFIX.size:
        raise DecryptionFailed
    magic, version, mode = _PREFIX.unpack_from(record)
    if magic != MAGIC or version != VERSION or mode not in (MODE_PLAIN, MODE_PASSPHRASE, MODE_KEY):
        raise DecryptionFailed
    return int(mode)


def unlock(
    record: bytes, *, purpose: str, passphrase: str | None = None, key: bytes | None = None
) -> bytes:
    """The secret in `record`. PassphraseRequired for an Extra Lock record without a
    passphrase; DecryptionFailed for a wrong passphrase or key, a record of another mode than
    the passphrase or key given implies, another purpose, or any changed byte."""
    record = bytes(record)
    mode = lock_mode(record)
    # A caller holding a passphrase or a key expects a record locked with it: a record
    # changed to another mode (say, "plain") is a changed record.
    if (passphrase is not None and mode != MODE_PASSPHRASE) or (
        key is not None and mode != MODE_KEY
    ):
        raise DecryptionFailed
    if mode == MODE_PLAIN:
        return record[_PREFIX.size :]
    if mode == MODE_KEY:
        if key is None or len(key) != LOCK_KEY_BYTES:
            raise DecryptionFailed
        split = _PREFIX.size + _NONCE_BYTES
        aead_key = bytes(key)
    else:
        if passphrase is None:
            raise PassphraseRequired("The device is protected by Extra Lock; give its passphrase.")
        split = _PREFIX.size + ARGON2_FIELDS.size + _NONCE_BYTES
        if len(record) < split:
            raise DecryptionFailed
        try:
            # The bounds on Argon2Params cap the cost a tampered record can make us spend.
            params, salt = unpack_argon2_fields(record, _PREFIX.size)
            aead_key = derive_passphrase_key(passphrase, salt, params)
        except ValueError:
            raise DecryptionFailed from None
    if len(record) < split + _TAG_BYTES:
        raise DecryptionFailed
    header, sealed = record[:split], record[split:]
    try:
        return AESGCM(aead_key).decrypt(header[-_NONCE_BYTES:], sealed, _aad(header, purpose))
    except InvalidTag:
        raise DecryptionFailed from None
