"""Key derivation for envelopes: Argon2id stretches a passphrase, HKDF-SHA256 makes the
content key and nonce prefix from the link key, the passphrase key and the device secret.
The format is fixed in docs/protocol/envelope.md."""

from __future__ import annotations

import struct
import unicodedata
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from atopos.crypto.hkdf import derive_key
from atopos.crypto.sizes import DEVICE_SECRET_BYTES

__all__ = [
    "ARGON2_FIELDS",
    "ARGON2_ITERATIONS_MAX",
    "ARGON2_LANES_MAX",
    "ARGON2_MEMORY_KIB_MAX",
    "ARGON2_SALT_BYTES",
    "CONTENT_KEY_BYTES",
    "DEVICE_SECRET_BYTES",
    "ENVELOPE_INFO",
    "ENVELOPE_SALT_BYTES",
    "NONCE_PREFIX_BYTES",
    "PASSPHRASE_KEY_BYTES",
    "Argon2Params",
    "EnvelopeKeys",
    "derive_envelope_keys",
    "derive_passphrase_key",
    "normalize_passphrase",
    "pack_argon2_fields",
    "unpack_argon2_fields",
]

# Upper bounds a reader accepts from a header: they cap what a hostile envelope can make a
# reader's device spend (1 GiB of memory, 16 passes) before the first tag is checked.
ARGON2_MEMORY_KIB_MAX = 1 << 20
ARGON2_ITERATIONS_MAX = 16
ARGON2_LANES_MAX = 16
ARGON2_SALT_BYTES = 16
PASSPHRASE_KEY_BYTES = 32
# An Argon2id cost and salt as the envelope and lock headers carry them:
# memory (KiB), iterations, lanes (big-endian uint32 each), then the salt.
ARGON2_FIELDS = struct.Struct(f">III{ARGON2_SALT_BYTES}s")

ENVELOPE_SALT_BYTES = 32
ENVELOPE_INFO = b"atopos/envelope/v1"
CONTENT_KEY_BYTES = 32
NONCE_PREFIX_BYTES = 7


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Argon2Params:
    """Argon2id cost; the defaults are RFC 9106's second recommendation (64 MiB, t=3, p=4)."""

    memory_kib: int = 65536
    iterations: int = 3
    lanes: int = 4

    def __post_init__(self) -> None:
        if not (_is_int(self.lanes) and 1 <= self.lanes <= ARGON2_LANES_MAX):
            raise ValueError(f"Argon2 lanes must be between 1 and {ARGON2_LANES_MAX}")
        if not (_is_int(self.iterations) and 1 <= self.iterations <= ARGON2_ITERATIONS_MAX):
            raise ValueError(f"Argon2 iterations must be between 1 and {ARGON2_ITERATIONS_MAX}")
        # Argon2 itself needs at least 8 KiB per lane.
        if not (
            _is_int(self.memory_kib) and 8 * self.lanes <= self.memory_kib <= ARGON2_MEMORY_KIB_MAX
        ):
            raise ValueError(
                f"Argon2 memory must be between 8 KiB per lane and {ARGON2_MEMORY_KIB_MAX} KiB"
            )


def pack_argon2_fields(params: Argon2Params, salt: bytes) -> bytes:
    return ARGON2_FIELDS.pack(params.memory_kib, params.iterations, params.lanes, salt)


def unpack_argon2_fields(data: bytes, offset: int) -> tuple[Argon2Params, bytes]:
    """The cost and salt at `offset`; ValueError for a cost outside the bounds a reader
    accepts (a hostile header must not make us spend more)."""
    memory_kib, iterations, lanes, salt = ARGON2_FIELDS.unpack_from(data, offset)
    return Argon2Params(memory_kib=memory_kib, iterations=iterations, lanes=lanes), salt


@dataclass(frozen=True, slots=True)
class EnvelopeKeys:
    """The AES-256-GCM key and the 7-byte nonce prefix of one envelope."""

    # repr=False: a stray log line or traceback must not print key material.
    key: bytes = field(repr=False)
    nonce_prefix: bytes = field(repr=False)


def normalize_passphrase(passphrase: str) -> bytes:
    """UTF-8 of the NFC form, so the same passphrase typed on any keyboard or OS matches.

    Raises ValueError (UnicodeEncodeError) for strings UTF-8 cannot encode (lone surrogates).
    """
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def derive_passphrase_key(passphrase: str, salt: bytes, params: Argon2Params) -> bytes:
    """Argon2id (version 0x13) of the normalised passphrase: 32 bytes, no secret, no AD."""
    if len(salt) != ARGON2_SALT_BYTES:
        raise ValueError(f"the Argon2 salt must be {ARGON2_SALT_BYTES} bytes")
    kdf = Argon2id(
        salt=bytes(salt),
        length=PASSPHRASE_KEY_BYTES,
        iterations=params.iterations,
        lanes=params.lanes,
        memory_cost=params.memory_kib,
    )
    return kdf.derive(normalize_passphrase(passphrase))


def derive_envelope_keys(
    link_key: bytes,
    salt: bytes,
    passphrase_key: bytes | None = None,
    device_secret: bytes | None = None,
) -> EnvelopeKeys:
    """HKDF-SHA256(ikm = link_key [|| passphrase_key] [|| device_secret], salt,
    info "atopos/envelope/v1"), in that order."""
    if len(salt) != ENVELOPE_SALT_BYTES:
        raise ValueError(f"the envelope salt must be {ENVELOPE_SALT_BYTES} bytes")
    if passphrase_key is not None and len(passphrase_key) != PASSPHRASE_KEY_BYTES:
        raise ValueError(f"the passphrase key must be {PASSPHRASE_KEY_BYTES} bytes")
    if device_secret is not None and len(device_secret) != DEVICE_SECRET_BYTES:
        raise ValueError(f"the device secret must be {DEVICE_SECRET_BYTES} bytes")
    ikm = bytes(link_key)
    if passphrase_key is not None:
        ikm += bytes(passphrase_key)
    if device_secret is not None:
        ikm += bytes(device_secret)
    okm = derive_key(
        ikm, info=ENVELOPE_INFO, salt=bytes(salt), length=CONTENT_KEY_BYTES + NONCE_PREFIX_BYTES
    )
    return EnvelopeKeys(key=okm[:CONTENT_KEY_BYTES], nonce_prefix=okm[CONTENT_KEY_BYTES:])
