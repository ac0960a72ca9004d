"""A leaving member's signing seeds, sealed for the members of its epoch (docs/protocol/
rooms.md, "Leaving, ending, deniability").

A member publishes every Ed25519 seed it signed with when it leaves (deniability), but not
in the clear: a relay that withholds its `left` could sign admissions with them while the
others still count it in. They are sealed under a key derived from the epoch link of the
leaver's current epoch, which exactly the members of that epoch hold (the ones who could
forge a transcript of it anyway), and the relay does not:

    key    = HKDF(epoch_link[n], salt = room_id,
                  info = "atopos/room/v1/published-seeds" || u32(index))
    aad    = "atopos/room/v1/published-seeds\\0" || room_id || u64(n) || u32(index)
    sealed = nonce(12, random) || AES-256-GCM(key, nonce, seed_1 || ... || seed_k, aad)

1 <= k <= 64, so `sealed` is 12 + 32k + 16 bytes. A member leaves once per index, so each key
seals one value; the nonce is random all the same.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from atopos.crypto.errors import DecryptionFailed
from atopos.crypto.hkdf import derive_key
from atopos.crypto.randomness import RandomBytes, draw

__all__ = [
    "MAX_PUBLISHED_SEEDS",
    "MAX_SEALED_SEEDS_BYTES",
    "MIN_SEALED_SEEDS_BYTES",
    "open_published_seeds",
    "published_seeds_aad",
    "published_seeds_key",
    "seal_published_seeds",
    "sealed_seed_count",
]

MAX_PUBLISHED_SEEDS = 64
_SEED_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16
_OVERHEAD = _NONCE_BYTES + _TAG_BYTES
MIN_SEALED_SEEDS_BYTES = _OVERHEAD + _SEED_BYTES
MAX_SEALED_SEEDS_BYTES = _OVERHEAD + _SEED_BYTES * MAX_PUBLISHED_SEEDS
_ROOM_ID_BYTES = 16

_INFO = b"atopos/room/v1/published-seeds"
_AAD_LABEL = b"atopos/room/v1/published-seeds\x00"


def _sized(value: bytes, size: int, name: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview) or len(value) != size:
        raise ValueError(f"{name} must be {size} bytes")
    return bytes(value)


def sealed_seed_count(size: int) -> int:
    """How many seeds a sealed value of `size` bytes holds; ValueError unless it is one of
    the 64 sizes 12 + 32k + 16 (1 <= k <= 64)."""
    count, rest = divmod(size - _OVERHEAD, _SEED_BYTES)
    if rest or not 1 <= count <= MAX_PUBLISHED_SEEDS:
        raise ValueError("sealed seeds are 12 + 32k + 16 bytes, 1 <= k <= 64")
    return count


def published_seeds_key(epoch_link: bytes, room_id: bytes, index: int) -> bytes:
    """HKDF(epoch_link, salt = room_id, info = label || u32(index))."""
    return derive_key(
        _sized(epoch_link, 32, "epoch_link"),
        salt=_sized(room_id, _ROOM_ID_BYTES, "room_id"),
        info=_INFO + struct.pack(">I", index),
    )


def published_seeds_aad(room_id: bytes, epoch: int, index: int) -> bytes:
    """label || room_id || u64(epoch) || u32(index)."""
    room = _sized(room_id, _ROOM_ID_BYTES, "room_id")
    return _AAD_LABEL + room + struct.pack(">QI", epoch, index)


def seal_published_seeds(
    epoch_link: bytes,
    room_id: bytes,
    epoch: int,
    index: int,
    seeds: Sequence[bytes],
    random_bytes: RandomBytes,
) -> bytes:
    """nonce || AES-256-GCM(key, nonce, seeds concatenated, aad): what `leave` carries."""
    if not 1 <= len(seeds) <= MAX_PUBLISHED_SEEDS:
        raise ValueError(f"a member publishes 1 to {MAX_PUBLISHED_SEEDS} seeds")
    plaintext = b"".join(_sized(seed, _SEED_BYTES, "seed") for seed in seeds)
    key = published_seeds_key(epoch_link, room_id, index)
    nonce = draw(random_bytes, _NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, published_seeds_aad(room_id, epoch, index))


def open_published_seeds(
    epoch_link: bytes, room_id: bytes, epoch: int, index: int, sealed: bytes
) -> list[bytes]:
    """The seeds member `index` published leaving epoch `epoch`, for a holder of that
    epoch's link; DecryptionFailed for anything else."""
    try:
        sealed_seed_count(len(sealed))
    except ValueError:
        raise DecryptionFailed from None
    key = published_seeds_key(epoch_link, room_id, index)
    nonce, body = bytes(sealed[:_NONCE_BYTES]), bytes(sealed[_NONCE_BYTES:])
    try:
        plaintext = AESGCM(key).decrypt(nonce, body, published_seeds_aad(room_id, epoch, index))
    except InvalidTag:
        raise DecryptionFailed from None
    return [plaintext[i : i + _SEED_BYTES] for i in range(0, len(plaintext), _SEED_BYTES)]
