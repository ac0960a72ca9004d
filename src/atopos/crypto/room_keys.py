"""Room key schedule (docs/protocol/rooms.md, "Key schedule").

The link's shards and capabilities (S_link, the creator secret C, invite secrets I) become
Ed25519 keys that prove knowledge to the relay; S_link and the relay's shard S_relay together
become the room secret, from which come the member-auth key (joiners prove knowledge to the
members, never to the relay), the metadata key (room name, display names) and the base of the
epoch chain. Every derivation is HKDF-SHA256 with a label of its own and the room id as salt.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import struct
from dataclasses import dataclass
from enum import IntEnum

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from atopos.crypto.device import is_valid_ed25519_public_key, is_valid_x25519_public_key
from atopos.crypto.errors import DecryptionFailed
from atopos.crypto.hkdf import derive_key
from atopos.crypto.randomness import RandomBytes, draw

__all__ = [
    "CHALLENGE_BYTES",
    "KEY_BYTES",
    "MAX_PROFILE_TEXT_BYTES",
    "PROFILE_PADDED_BYTES",
    "ROOM_ID_BYTES",
    "SEALED_LINK_BYTES",
    "SEALED_PROFILE_BYTES",
    "SECRET_BYTES",
    "SIGNATURE_BYTES",
    "MemberKeys",
    "ProofKind",
    "RoomSecrets",
    "derive_epoch_secret",
    "derive_proof_key",
    "derive_room_secrets",
    "end_proof_message",
    "join_proof_message",
    "member_auth_message",
    "member_auth_tag",
    "open_invite_link",
    "open_metadata",
    "profile_aad",
    "room_name_aad",
    "seal_invite_link",
    "seal_metadata",
    "verify_member_auth",
    "verify_signature",
]

ROOM_ID_BYTES = 16
SECRET_BYTES = 32  # S_link, S_relay, C, I, every derived secret
KEY_BYTES = 32  # Ed25519 and X25519 public keys, Ed25519 seeds
SIGNATURE_BYTES = 64
CHALLENGE_BYTES = 32
SEALED_LINK_BYTES = SECRET_BYTES + 16
# A display name or room name is at most this long, and always padded to one size, so its
# ciphertext says nothing about its length.
MAX_PROFILE_TEXT_BYTES = 126
PROFILE_PADDED_BYTES = 2 + MAX_PROFILE_TEXT_BYTES
_METADATA_NONCE_BYTES = 12
SEALED_PROFILE_BYTES = _METADATA_NONCE_BYTES + PROFILE_PADDED_BYTES + 16

_ROOT_INFO = b"atopos/room/v1/root"
_MEMBER_AUTH_INFO = b"atopos/room/v1/member-auth"
_METADATA_INFO = b"atopos/room/v1/metadata"
_EPOCH_BASE_INFO = b"atopos/room/v1/epoch-base"
_EPOCH_INFO = b"atopos/room/v1/epoch"
_INVITE_SEAL_INFO = b"atopos/room/v1/invite-seal"
_JOIN_PROOF_LABEL = b"atopos/room/v1/join-proof\x00"
_END_PROOF_LABEL = b"atopos/room/v1/end-proof\x00"
_MEMBER_AUTH_LABEL = b"atopos/room/v1/member-auth\x00"
_ROOM_NAME_AAD_LABEL = b"atopos/room/v1/room-name\x00"
_PROFILE_AAD_LABEL = b"atopos/room/v1/profile\x00"
# The invite seal key encrypts exactly one value, so a constant nonce is safe.
_INVITE_SEAL_NONCE = bytes(12)


class ProofKind(IntEnum):
    """Which capability a join proof (or the end proof) is made with; its byte is signed."""

    LINK = 1  # from S_link: any holder of the room link
    INVITE = 2  # from an invite secret I: single use
    CREATOR = 3  # from the creator secret C: may also end the room

    @property
    def info(self) -> bytes:
        return {
            ProofKind.LINK: b"atopos/room/v1/join-auth",
            ProofKind.INVITE: b"atopos/room/v1/invite-auth",
            ProofKind.CREATOR: b"atopos/room/v1/creator-auth",
        }[self]


def _hkdf(ikm: bytes, info: bytes, salt: bytes | None, length: int = SECRET_BYTES) -> bytes:
    return derive_key(ikm, info=info, salt=salt, length=length)


def _check(value: bytes, size: int, name: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview) or len(value) != size:
        raise ValueError(f"{name} must be {size} bytes")
    return bytes(value)


# -- proofs to the relay --------------------------------------------------------------------


def derive_proof_key(kind: ProofKind, secret: bytes, room_id: bytes) -> Ed25519PrivateKey:
    """The Ed25519 key a capability secret (S_link, I or C) proves itself with:
    seed = HKDF(ikm = secret, salt = room_id, info = the kind's label)."""
    seed = _hkdf(_check(secret, SECRET_BYTES, "secret"), kind.info, _room(room_id))
    return Ed25519PrivateKey.from_private_bytes(seed)


def _room(room_id: bytes) -> bytes:
    return _check(room_id, ROOM_ID_BYTES, "room_id")


def join_proof_message(kind: ProofKind, room_id: bytes, challenge: bytes) -> bytes:
    """label || kind (1 byte) || room_id || challenge: signed once per connection, so a
    proof seen in a log or by a proxy answers no other challenge."""
    return (
        _JOIN_PROOF_LABEL
        + bytes([kind])
        + _room(room_id)
        + _check(challenge, CHALLENGE_BYTES, "challenge")
    )


def end_proof_message(room_id: bytes, challenge: bytes) -> bytes:
    """label || room_id || challenge: the creator key's order to end the room now."""
    return _END_PROOF_LABEL + _room(room_id) + _check(challenge, CHALLENGE_BYTES, "challenge")


@functools.lru_cache(maxsize=4096)
def _is_usable_verifying_key(raw: bytes) -> bool:
    # The point check is pure Python (about a millisecond); a room checks the same few
    # hundred keys on every frame, so each key's answer is remembered.
    return is_valid_ed25519_public_key(raw)


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True when `signature` is `public_key`'s Ed25519 signature over `message`; False for
    any malformed input (a small-order or non-canonical key included), never an exception."""
    if len(signature) != SIGNATURE_BYTES or not _is_usable_verifying_key(bytes(public_key)):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(bytes(public_key)).verify(
            bytes(signature), bytes(message)
        )
    except (InvalidSignature, ValueError):
        return False
    return True


# -- invites -----------------------------------------------------------------------------------


def _invite_seal_key(invite_secret: bytes, room_id: bytes) -> bytes:
    return _hkdf(_check(invite_secret, SECRET_BYTES, "invite secret"), _INVITE_SEAL_INFO, room_id)


def seal_invite_link(invite_secret: bytes, room_id: bytes, s_link: bytes) -> bytes:
    """S_link sealed for one invite: AES-256-GCM(HKDF(I, salt room_id, info "invite-seal"),
    12 zero bytes, S_link, aad room_id). The relay keeps it until the invite is used."""
    key = _invite_seal_key(invite_secret, _room(room_id))
    return AESGCM(key).encrypt(_INVITE_SEAL_NONCE, _check(s_link, SECRET_BYTES, "S_link"), room_id)


def open_invite_link(invite_secret: bytes, room_id: bytes, sealed_link: bytes) -> bytes:
    """S_link from an invite's sealed copy; DecryptionFailed if anything differs."""
    key = _invite_seal_key(invite_secret, _room(room_id))
    try:
        return AESGCM(key).decrypt(_INVITE_SEAL_NONCE, bytes(sealed_link), room_id)
    except InvalidTag:
        raise DecryptionFailed from None


# -- room secrets ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoomSecrets:
    """What both shards give: the room secret and the keys derived from it."""

    room_id: bytes
    room_secret: bytes
    member_auth_key: bytes
    metadata_key: bytes
    epoch_base: bytes


def derive_room_secrets(s_link: bytes, s_relay: bytes, room_id: bytes) -> RoomSecrets:
    """room_secret = HKDF(ikm = S_link || S_relay, salt = room_id, info ".../root"); the
    member-auth key, metadata key and epoch base are HKDF(room_secret, salt room_id, own info)."""
    room_id = _room(room_id)
    ikm = _check(s_link, SECRET_BYTES, "S_link") + _check(s_relay, SECRET_BYTES, "S_relay")
    root = _hkdf(ikm, _ROOT_INFO, room_id)
    return RoomSecrets(
        room_id=room_id,
        room_secret=root,
        member_auth_key=_hkdf(root, _MEMBER_AUTH_INFO, room_id),
        metadata_key=_hkdf(root, _METADATA_INFO, room_id),
        epoch_base=_hkdf(root, _EPOCH_BASE_INFO, room_id),
    )


def member_auth_message(
    room_id: bytes, nonce: bytes, sign_key: bytes, seal_key: bytes, profile: bytes
) -> bytes:
    """label || room_id || the relay's join nonce || the joiner's Ed25519 key || X25519 key
    || its sealed profile (156 bytes)."""
    return (
        _MEMBER_AUTH_LABEL
        + _room(room_id)
        + _check(nonce, CHALLENGE_BYTES, "nonce")
        + _check(sign_key, KEY_BYTES, "sign_key")
        + _check(seal_key, KEY_BYTES, "seal_key")
        + _check(profile, SEALED_PROFILE_BYTES, "profile")
    )


def member_auth_tag(secrets: RoomSecrets, message: bytes) -> bytes:
    """HMAC-SHA256(member_auth_key, message): what only holders of both shards can make."""
    return hmac.new(secrets.member_auth_key, message, hashlib.sha256).digest()


def verify_member_auth(secrets: RoomSecrets, message: bytes, tag: bytes) -> bool:
    return hmac.compare_digest(member_auth_tag(secrets, message), bytes(tag))


def derive_epoch_secret(
    previous: bytes, fresh: bytes, room_id: bytes, epoch: int, roster_hash: bytes
) -> bytes:
    """epoch_secret[n] = HKDF(salt = epoch_secret[n-1] (the epoch base for a founding
    commit), ikm = 32 fresh bytes, info ".../epoch" || room_id || u64(n) || roster_hash)."""
    info = _EPOCH_INFO + _room(room_id) + struct.pack(">Q", epoch) + _check(roster_hash, 32, "hash")
    return _hkdf(_check(fresh, SECRET_BYTES, "fresh"), info, _check(previous, SECRET_BYTES, "prev"))


# -- metadata (room name, display names) -----------------------------------------------------


def room_name_aad(room_id: bytes, is_knock: bool, is_invite_only: bool) -> bytes:
    """The AAD of the sealed room name: label || room_id || u8(flags), flags = 1 for knock
    mode | 2 for invite-only. The creator's flags are thus authenticated: a relay that
    reports other flags (to switch knock mode off) gets a name no member can open."""
    flags = (1 if is_knock else 0) | (2 if is_invite_only else 0)
    return _ROOM_NAME_AAD_LABEL + _room(room_id) + bytes([flags])


def profile_aad(room_id: bytes, sign_key: bytes) -> bytes:
    """The AAD of a member's sealed display name: label || room_id || its identity key."""
    return _PROFILE_AAD_LABEL + _room(room_id) + _check(sign_key, KEY_BYTES, "sign_key")


def seal_metadata(secrets: RoomSecrets, text: str, aad: bytes, random_bytes: RandomBytes) -> bytes:
    """nonce(12) || AES-256-GCM(metadata_key, nonce, u16(len) || utf8(text) || zeros, aad):
    always 12 + 128 + 16 = 156 bytes, whatever the name's length."""
    raw = text.encode("utf-8")
    if len(raw) > MAX_PROFILE_TEXT_BYTES:
        raise ValueError(f"a name is at most {MAX_PROFILE_TEXT_BYTES} bytes of UTF-8")
    padded = struct.pack(">H", len(raw)) + raw + bytes(MAX_PROFILE_TEXT_BYTES - len(raw))
    nonce = draw(random_bytes, _METADATA_NONCE_BYTES)
    return nonce + AESGCM(secrets.metadata_key).encrypt(nonce, padded, aad)


def open_metadata(secrets: RoomSecrets, sealed: bytes, aad: bytes) -> str:
    """The name inside `sealed`; DecryptionFailed for a wrong key, tampering or bad padding."""
    if len(sealed) != SEALED_PROFILE_BYTES:
        raise DecryptionFailed
    nonce, body = bytes(sealed[:_METADATA_NONCE_BYTES]), bytes(sealed[_METADATA_NONCE_BYTES:])
    try:
        padded = AESGCM(secrets.metadata_key).decrypt(nonce, body, aad)
    except InvalidTag:
        raise DecryptionFailed from None
    (length,) = struct.unpack(">H", padded[:2])
    if length > MAX_PROFILE_TEXT_BYTES or any(padded[2 + length :]):
        raise DecryptionFailed
    try:
        return padded[2 : 2 + length].decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptionFailed from None


# -- a member's per-room keys ----------------------------------------------------------------


class MemberKeys:
    """A member's fresh per-room key pairs: Ed25519 signs its frames, X25519 receives epoch
    secrets. Made from random bytes for one room and one key generation; never reused."""

    __slots__ = ("_seal", "_sign", "seal_key", "sign_key")

    def __init__(self, sign_seed: bytes, seal_private: bytes) -> None:
        self._sign = Ed25519PrivateKey.from_private_bytes(_check(sign_seed, KEY_BYTES, "seed"))
        self._seal = X25519PrivateKey.from_private_bytes(_check(seal_private, KEY_BYTES, "key"))
        self.sign_key = self._sign.public_key().public_bytes_raw()
        self.seal_key = self._seal.public_key().public_bytes_raw()
        if not is_valid_x25519_public_key(self.seal_key):  # pragma: no cover - clamped scalar
            raise ValueError("unusable X25519 key")

    @classmethod
    def generate(cls, random_bytes: RandomBytes) -> MemberKeys:
        return cls(draw(random_bytes, KEY_BYTES), draw(random_bytes, KEY_BYTES))

    def __repr__(self) -> str:
        return "MemberKeys(...)"

    def sign(self, message: bytes) -> bytes:
        return self._sign.sign(bytes(message))

    def shared_secret(self, ephemeral_public: bytes) -> bytes:
        """X25519(own private, ephemeral_public); ValueError for a small-order point."""
        return self._seal.exchange(X25519PublicKey.from_public_bytes(bytes(ephemeral_public)))

    def signing_seed(self) -> bytes:
        """The Ed25519 private seed: published when the member leaves (deniability)."""
        return self._sign.private_bytes_raw()

    def private_bytes(self) -> tuple[bytes, bytes]:
        """(Ed25519 seed, X25519 private scalar): for vectors and tests."""
        return self._sign.private_bytes_raw(), self._seal.private_bytes_raw()
