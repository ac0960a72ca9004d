"""Device keys: identity, device code, proof of possession and sealing (docs/protocol/device.md).

A device holds two key pairs: Ed25519 to prove, at the ticket step, that it is the device a
secret is bound to, and X25519 to receive the secret's device share sealed to it. A Python
device derives both from one 32-byte seed (so a 24-word phrase backs it up); a browser keeps
two non-extractable WebCrypto key pairs and no seed. Everything below works from the key
pairs alone: `DeviceUnsealer` is the one operation a sealed envelope needs from the device.

The device code is what a creator pastes to bind a secret: both public keys and a checksum,
`atd1-` + base64url(ed25519_pub || x25519_pub || checksum(4)).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from nacl.bindings import crypto_core_ed25519_add
from nacl.exceptions import RuntimeError as SodiumRuntimeError

from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.crypto.challenge_proof import challenge_proof_message, verify_challenge_proof
from atopos.crypto.errors import CryptoError
from atopos.crypto.hkdf import derive_key
from atopos.crypto.sizes import (
    AES_GCM_TAG_BYTES,
    DEVICE_SECRET_BYTES,
    DEVICE_SEED_BYTES,
    SECRET_ID_BYTES,
)
from atopos.crypto.x25519_seal import open_sealed, seal_to

__all__ = [
    "DEVICE_CODE_CHARS",
    "DEVICE_CODE_PREFIX",
    "DEVICE_SECRET_BYTES",
    "DEVICE_SEED_BYTES",
    "EPHEMERAL_PRIVATE_BYTES",
    "PUBLIC_KEY_BYTES",
    "SEALED_DEVICE_SECRET_BYTES",
    "SECRET_ID_BYTES",
    "SIGNATURE_BYTES",
    "DeviceKeys",
    "DevicePublic",
    "DeviceUnsealer",
    "InvalidDeviceCode",
    "derive_session_key",
    "device_code_checksum",
    "device_proof_message",
    "is_valid_ed25519_public_key",
    "is_valid_x25519_public_key",
    "open_device_secret",
    "parse_device_code",
    "seal_device_secret",
    "verify_device_proof",
]

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
EPHEMERAL_PRIVATE_BYTES = 32
SEALED_DEVICE_SECRET_BYTES = DEVICE_SECRET_BYTES + AES_GCM_TAG_BYTES

_ED25519_INFO = b"atopos/device/v1/ed25519"
_X25519_INFO = b"atopos/device/v1/x25519"
_SESSION_INFO = b"atopos/device/v1/session"
_CODE_CHECKSUM_LABEL = b"atopos/device-code/v1\x00"
_PROOF_LABEL = b"atopos/device-proof/v1\x00"
_SEAL_INFO = b"atopos/device-seal/v1"
DEVICE_CODE_PREFIX = "atd1-"
_CODE_CHECKSUM_BYTES = 4
_CODE_BYTES = 2 * PUBLIC_KEY_BYTES + _CODE_CHECKSUM_BYTES
DEVICE_CODE_CHARS = len(DEVICE_CODE_PREFIX) + (_CODE_BYTES * 4 + 2) // 3  # 5 + 91 = 96


# -- public keys and the device code -------------------------------------------------------

# Ed25519 point validation (RFC 8032, section 5.1.3), plus a small-order check. OpenSSL
# loads any 32 bytes as a public key; a small-order key would let anyone "prove" possession.
_P = 2**255 - 19
# The y of edwards25519's eight points of small order (orders 1, 2, 4 and 8): on the curve,
# a point has small order exactly when its y is one of these (its x only picks the sign).
_SMALL_ORDER_Y = frozenset(
    {
        0,
        1,
        _P - 1,
        2707385501144840649318225287225658788936804267575313519463743609750303402022,
        _P - 2707385501144840649318225287225658788936804267575313519463743609750303402022,
    }
)
# (0, 1), the neutral point: adding it asks libsodium to decode the other point and nothing more.
_NEUTRAL = (1).to_bytes(PUBLIC_KEY_BYTES, "little")


def is_valid_ed25519_public_key(raw: bytes) -> bool:
    """32 bytes that encode, canonically, a point of edwards25519 outside its small-order
    subgroup (so no signature can verify for every message)."""
    if len(raw) != PUBLIC_KEY_BYTES:
        return False
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    # Non-canonical (y >= p), or small order; x = 0 with the sign bit set (RFC 8032's one
    # other non-canonical form) has y = 1 or p - 1, so it is refused here too.
    if y >= _P or y in _SMALL_ORDER_Y:
        return False
    # Whether some x has x^2 = (y^2 - 1) / (d y^2 + 1): libsodium's decoding (ge25519_frombytes)
    # fails exactly when none does. Its own is_valid_point also checks the prime-order
    # subgroup, a scalar multiplication that costs twice this, and would refuse the mixed-order
    # keys RFC 8032 and OpenSSL accept (tests/unit/test_ed25519_point_check.py).
    try:
        crypto_core_ed25519_add(bytes(raw), _NEUTRAL)
    except SodiumRuntimeError:
        return False
    return True


def is_valid_x25519_public_key(raw: bytes) -> bool:
    """32 bytes, canonical (u < 2^255 - 19, top bit clear) and not of small order (an
    exchange with it would give the all-zero secret, which X25519 implementations refuse)."""
    if len(raw) != PUBLIC_KEY_BYTES or int.from_bytes(raw, "little") >= _P:
        return False
    probe = X25519PrivateKey.from_private_bytes(b"\x01" * 32)
    try:
        probe.exchange(X25519PublicKey.from_public_bytes(bytes(raw)))
    except ValueError:
        return False
    return True


def device_code_checksum(signing_key: bytes, sealing_key: bytes) -> bytes:
    """SHA-256("atopos/device-code/v1" || 0x00 || ed25519_pub || x25519_pub)[0:4]."""
    digest = hashlib.sha256(_CODE_CHECKSUM_LABEL + signing_key + sealing_key).digest()
    return digest[:_CODE_CHECKSUM_BYTES]


class InvalidDeviceCode(CryptoError, ValueError):
    """A device code that is not exactly one; the message is one sentence for a person.

    `kind` says which check failed, in the order they run: "prefix", "length", "encoding"
    (not canonical unpadded base64url), "checksum" (a typo), "keys" (not usable keys).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclasses.dataclass(frozen=True, slots=True)
class DevicePublic:
    """A device's two public keys: what a creator needs to bind a secret to it."""

    signing_key: bytes  # Ed25519, 32 bytes: verifies device proofs
    sealing_key: bytes  # X25519, 32 bytes: the device share is sealed to it

    def __post_init__(self) -> None:
        if not is_valid_ed25519_public_key(self.signing_key):
            raise ValueError("the signing key is not a valid Ed25519 public key")
        if not is_valid_x25519_public_key(self.sealing_key):
            raise ValueError("the sealing key is not a valid X25519 public key")

    @property
    def code(self) -> str:
        checksum = device_code_checksum(self.signing_key, self.sealing_key)
        return DEVICE_CODE_PREFIX + b64url_encode(self.signing_key + self.sealing_key + checksum)


def parse_device_code(text: str) -> DevicePublic:
    """Parse a device code strictly; InvalidDeviceCode (one sentence) on any difference.

    Only white space around the code is ignored: a code split or wrapped inside is refused,
    and a typo is caught by the checksum (a random change passes with odds 2^-32).
    """
    code = text.strip()
    if not code.startswith(DEVICE_CODE_PREFIX):
        raise InvalidDeviceCode("prefix", "A device code starts with 'atd1-'; copy the whole code.")
    if len(code) != DEVICE_CODE_CHARS:
        raise InvalidDeviceCode(
            "length",
            f"A device code has {DEVICE_CODE_CHARS} characters and this one has {len(code)}; "
            "copy the whole code.",
        )
    try:
        raw = b64url_decode(code[len(DEVICE_CODE_PREFIX) :])
    except ValueError:
        raise InvalidDeviceCode(
            "encoding", "The device code contains characters that cannot be in one; copy it again."
        ) from None
    signing_key = raw[:PUBLIC_KEY_BYTES]
    sealing_key = raw[PUBLIC_KEY_BYTES : 2 * PUBLIC_KEY_BYTES]
    checksum = raw[2 * PUBLIC_KEY_BYTES :]
    if not hmac.compare_digest(checksum, device_code_checksum(signing_key, sealing_key)):
        raise InvalidDeviceCode(
            "checksum", "The device code has a typo (its checksum does not match)."
        )
    try:
        return DevicePublic(signing_key, sealing_key)
    except ValueError:
        raise InvalidDeviceCode("keys", "The device code does not hold usable keys.") from None


# -- private keys --------------------------------------------------------------------------


class DeviceUnsealer(Protocol):
    """What opening a device-bound envelope needs from the device: its X25519 public key
    and an X25519 exchange with its private key (which may be non-extractable)."""

    @property
    def sealing_key(self) -> bytes: ...

    def shared_secret(self, ephemeral_public: bytes) -> bytes:
        """X25519(device private, ephemeral_public); ValueError for a small-order point."""
        ...


class DeviceKeys:
    """A device's private keys. `from_seed` is how a Python device makes them.

    Implements `DeviceUnsealer`; the private keys never leave this object except through
    `private_bytes` (for the test vectors), and its repr shows only the device code.
    """

    __slots__ = ("_sealing", "_signing", "public")

    public: DevicePublic

    def __init__(self, ed25519_private: bytes, x25519_private: bytes) -> None:
        if len(ed25519_private) != 32 or len(x25519_private) != 32:
            raise ValueError("device private keys are 32 bytes each")
        self._signing = Ed25519PrivateKey.from_private_bytes(bytes(ed25519_private))
        self._sealing = X25519PrivateKey.from_private_bytes(bytes(x25519_private))
        self.public = DevicePublic(
            self._signing.public_key().public_bytes_raw(),
            self._sealing.public_key().public_bytes_raw(),
        )

    @classmethod
    def from_seed(cls, seed: bytes) -> DeviceKeys:
        """Ed25519 private = HKDF(seed, info ".../ed25519"), X25519 private = HKDF(seed,
        info ".../x25519"); HKDF-SHA256 with an empty salt, 32 bytes each."""
        if len(seed) != DEVICE_SEED_BYTES:
            raise ValueError(f"a device seed is {DEVICE_SEED_BYTES} bytes")
        return cls(derive_key(seed, info=_ED25519_INFO), derive_key(seed, info=_X25519_INFO))

    def __repr__(self) -> str:
        return f"DeviceKeys({self.public.code})"

    @property
    def sealing_key(self) -> bytes:
        return self.public.sealing_key

    def shared_secret(self, ephemeral_public: bytes) -> bytes:
        return self._sealing.exchange(X25519PublicKey.from_public_bytes(bytes(ephemeral_public)))

    def sign_proof(self, secret_id: bytes, challenge: str) -> bytes:
        """The 64-byte Ed25519 device proof for this secret id and this exact challenge."""
        return self._signing.sign(device_proof_message(secret_id, challenge))

    def private_bytes(self) -> tuple[bytes, bytes]:
        """(Ed25519 private seed, X25519 private scalar) as raw bytes (vectors, tests)."""
        return (
            self._signing.private_bytes_raw(),
            self._sealing.private_bytes_raw(),
        )


def derive_session_key(seed: bytes) -> bytes:
    """The key that encrypts this device's session state at rest: HKDF(seed, info
    "atopos/device/v1/session"). Only a device with a seed keeps session state."""
    if len(seed) != DEVICE_SEED_BYTES:
        raise ValueError(f"a device seed is {DEVICE_SEED_BYTES} bytes")
    return derive_key(seed, info=_SESSION_INFO)


# -- proof of possession -------------------------------------------------------------------


def device_proof_message(secret_id: bytes, challenge: str) -> bytes:
    """The signed message: b"atopos/device-proof/v1" || 0x00 || secret_id || utf8(challenge)."""
    return challenge_proof_message(_PROOF_LABEL, secret_id, challenge)


def verify_device_proof(signing_key: bytes, secret_id: bytes, challenge: str, proof: str) -> bool:
    """True when `proof` (unpadded base64url of 64 bytes) is the device's signature over
    this secret id and this challenge. Never raises for bad input: it is simply False."""
    return verify_challenge_proof(_PROOF_LABEL, signing_key, secret_id, challenge, proof)


# -- sealing the device share --------------------------------------------------------------


def seal_device_secret(
    sealing_key: bytes, device_secret: bytes, ephemeral_private: bytes, aad: bytes
) -> tuple[bytes, bytes]:
    """Seal `device_secret` to the device's X25519 key; return (ephemeral_public, sealed).

    k = HKDF-SHA256(X25519(ephemeral, device), salt = ephemeral_pub || device_pub,
    info "atopos/device-seal/v1"); sealed = AES-256-GCM(k, 12 zero bytes, device_secret, aad).
    ValueError if the device key is of small order (the exchange would be all zeros).
    """
    if len(device_secret) != DEVICE_SECRET_BYTES:
        raise ValueError(f"the device secret must be {DEVICE_SECRET_BYTES} bytes")
    if not is_valid_x25519_public_key(sealing_key):
        raise ValueError("the device's X25519 key is not usable")
    return seal_to(sealing_key, device_secret, ephemeral_private, info=_SEAL_INFO, aad=aad)


def open_device_secret(
    device: DeviceUnsealer, ephemeral_public: bytes, sealed: bytes, aad: bytes
) -> bytes:
    """The device secret sealed to `device`; DecryptionFailed for another device, a changed
    byte, or a hostile (small-order) ephemeral key."""
    return open_sealed(
        device.shared_secret,
        device.sealing_key,
        ephemeral_public,
        sealed,
        info=_SEAL_INFO,
        aad=aad,
    )
