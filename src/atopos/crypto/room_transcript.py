"""What members sign and chain (docs/protocol/rooms.md, "Commits" and "Transcript").

Every signature covers a fixed byte string built here, never JSON, so a second
implementation signs the same bytes. Commits chain two hashes: the transcript hash (every
commit) and the membership hash (commits that change who is in the room; the safety code
comes from it, so it changes only when the people change, not at each re-key).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from atopos.crypto.hkdf import derive_key
from atopos.crypto.room_roster import RosterEntry, identity_hash

__all__ = [
    "CommitReason",
    "JoinEvidence",
    "SealedEntry",
    "admission_message",
    "commit_auth_message",
    "commit_signing_input",
    "confirm_tag",
    "joins_hash",
    "member_tag",
    "membership_after",
    "membership_start",
    "message_signing_input",
    "sealed_hash",
    "transcript_after",
    "transcript_start",
    "verify_member_tag",
]

_COMMIT_LABEL = b"atopos/room/v1/commit\x00"
_COMMIT_AUTH_LABEL = b"atopos/room/v1/commit-auth\x00"
_JOINS_LABEL = b"atopos/room/v1/joins\x00"
_SEALED_LABEL = b"atopos/room/v1/sealed\x00"
_TRANSCRIPT_LABEL = b"atopos/room/v1/transcript\x00"
_TRANSCRIPT_START_LABEL = b"atopos/room/v1/transcript-start\x00"
_MEMBERSHIP_LABEL = b"atopos/room/v1/membership\x00"
_MEMBERSHIP_START_LABEL = b"atopos/room/v1/membership-start\x00"
_MESSAGE_SIG_LABEL = b"atopos/room/v1/message-sig\x00"
_ADMIT_LABEL = b"atopos/room/v1/admit\x00"
_CONFIRM_INFO = b"atopos/room/v1/confirm"
_MEMBERSHIP_KEY_INFO = b"atopos/room/v1/membership-tag"
_MEMBER_TAG_LABEL = b"atopos/room/v1/member-tag\x00"


class CommitReason(IntEnum):
    """Why a commit starts a new epoch; its byte is signed."""

    FOUND = 1  # the first member of an empty room starts the chain from the epoch base
    CHANGE = 2  # joins and/or leaves ordered by the relay
    UPDATE = 3  # the committer replaces its own keys (post-compromise security)


@dataclass(frozen=True, slots=True)
class JoinEvidence:
    """A joiner as the relay announced it, with its proof to the members (and admission)."""

    index: int
    sign_key: bytes
    seal_key: bytes
    nonce: bytes
    auth: bytes
    profile: bytes
    admitted_by: int | None = None
    admission: bytes | None = None


@dataclass(frozen=True, slots=True)
class SealedEntry:
    index: int
    ephemeral: bytes
    sealed: bytes


def joins_hash(joins: Sequence[JoinEvidence]) -> bytes:
    """SHA-256(label || u32(count) || each: u32(index) || sign || seal || nonce || auth ||
    u16(len(profile)) || profile || 0x00, or 0x01 || u32(admitted_by) || admission)."""
    parts = [_JOINS_LABEL, struct.pack(">I", len(joins))]
    for join in joins:
        parts += [
            struct.pack(">I", join.index),
            join.sign_key,
            join.seal_key,
            join.nonce,
            join.auth,
            struct.pack(">H", len(join.profile)),
            join.profile,
        ]
        if join.admitted_by is None or join.admission is None:
            parts.append(b"\x00")
        else:
            parts += [b"\x01", struct.pack(">I", join.admitted_by), join.admission]
    return hashlib.sha256(b"".join(parts)).digest()


def sealed_hash(sealed: Sequence[SealedEntry]) -> bytes:
    """SHA-256(label || u32(count) || each: u32(index) || ephemeral || sealed)."""
    body = b"".join(struct.pack(">I", s.index) + s.ephemeral + s.sealed for s in sealed)
    return hashlib.sha256(_SEALED_LABEL + struct.pack(">I", len(sealed)) + body).digest()


def commit_signing_input(
    room_id: bytes,
    epoch: int,
    committer: int,
    reason: CommitReason,
    transcript: bytes,
    membership: bytes,
    roster_digest: bytes,
    joins_digest: bytes,
    sealed_digest: bytes,
) -> bytes:
    """label || room_id || u64(epoch) || u32(committer) || u8(reason) || previous transcript
    hash || previous membership hash || roster hash || joins hash || sealed hash."""
    return (
        _COMMIT_LABEL
        + bytes(room_id)
        + struct.pack(">QIB", epoch, committer, reason)
        + transcript
        + membership
        + roster_digest
        + joins_digest
        + sealed_digest
    )


def commit_auth_message(signing_input: bytes) -> bytes:
    """What the committer MACs with the member-auth key: the relay cannot make a commit."""
    return _COMMIT_AUTH_LABEL + signing_input


def member_tag(previous_link: bytes, room_id: bytes, signing_input: bytes) -> bytes:
    """HMAC(HKDF(epoch_link[n-1], salt room_id, info ".../membership-tag"), label ||
    signing input): only members of epoch n-1 hold epoch_link[n-1], so neither the relay nor
    a link holder can make it, even with a departed member's published signing seed."""
    key = derive_key(previous_link, info=_MEMBERSHIP_KEY_INFO, salt=bytes(room_id))
    return hmac.new(key, _MEMBER_TAG_LABEL + signing_input, hashlib.sha256).digest()


def verify_member_tag(
    previous_link: bytes, room_id: bytes, signing_input: bytes, tag: bytes
) -> bool:
    """Constant-time check of a commit's member tag against epoch_link[n-1]."""
    expected = member_tag(previous_link, room_id, signing_input)
    return hmac.compare_digest(expected, bytes(tag))


def transcript_start(room_id: bytes) -> bytes:
    return hashlib.sha256(_TRANSCRIPT_START_LABEL + bytes(room_id)).digest()


def transcript_after(signing_input: bytes) -> bytes:
    """The transcript hash after a commit: SHA-256(label || its signing input), which itself
    holds the previous transcript hash."""
    return hashlib.sha256(_TRANSCRIPT_LABEL + signing_input).digest()


def membership_start(room_id: bytes) -> bytes:
    return hashlib.sha256(_MEMBERSHIP_START_LABEL + bytes(room_id)).digest()


def membership_after(
    previous: bytes, reason: CommitReason, epoch: int, roster: Sequence[RosterEntry]
) -> bytes:
    """Unchanged by an UPDATE; otherwise SHA-256(label || previous || u64(epoch) ||
    identity hash of the new roster)."""
    if reason is CommitReason.UPDATE:
        return previous
    return hashlib.sha256(
        _MEMBERSHIP_LABEL + previous + struct.pack(">Q", epoch) + identity_hash(roster)
    ).digest()


def confirm_tag(epoch_secret: bytes, room_id: bytes, transcript: bytes) -> bytes:
    """HMAC(HKDF(epoch_secret, salt room_id, info ".../confirm"), transcript after the
    commit): every member who opened the same epoch secret computes the same tag."""
    key = derive_key(epoch_secret, info=_CONFIRM_INFO, salt=bytes(room_id))
    return hmac.new(key, transcript, hashlib.sha256).digest()


def message_signing_input(
    room_id: bytes, epoch: int, sender: int, counter: int, ciphertext: bytes
) -> bytes:
    """label || room_id || u64(epoch) || u32(sender) || u64(counter) || ciphertext."""
    return (
        _MESSAGE_SIG_LABEL + bytes(room_id) + struct.pack(">QIQ", epoch, sender, counter)
    ) + bytes(ciphertext)


def admission_message(
    room_id: bytes, joiner: int, nonce: bytes, sign_key: bytes, seal_key: bytes
) -> bytes:
    """label || room_id || u32(joiner index) || nonce || sign_key || seal_key: what a
    current member signs to admit a knocking joiner."""
    return _ADMIT_LABEL + bytes(room_id) + struct.pack(">I", joiner) + nonce + sign_key + seal_key
