"""The roster of an epoch and its hashes (docs/protocol/rooms.md, "Roster").

Each entry is a member's index (given by the relay, never reused in a room), its identity
key (the Ed25519 key it joined with; stays while it is present) and its current Ed25519 and
X25519 keys (a self-update replaces both), and its display name sealed with the metadata
key (fixed size). Entries are sorted by index.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["RosterEntry", "identity_hash", "roster_hash"]

_ROSTER_LABEL = b"atopos/room/v1/roster\x00"
_IDENTITY_LABEL = b"atopos/room/v1/identities\x00"


@dataclass(frozen=True, slots=True)
class RosterEntry:
    index: int
    identity: bytes
    sign_key: bytes
    seal_key: bytes
    profile: bytes


def _count(roster: Sequence[RosterEntry]) -> bytes:
    indices = [entry.index for entry in roster]
    if indices != sorted(set(indices)):
        raise ValueError("roster entries must be sorted by index without repeats")
    return struct.pack(">I", len(roster))


def roster_hash(roster: Sequence[RosterEntry]) -> bytes:
    """SHA-256(label || u32(count) || each entry: u32(index) || identity || sign || seal ||
    profile)."""
    body = b"".join(
        struct.pack(">I", e.index) + e.identity + e.sign_key + e.seal_key + e.profile
        for e in roster
    )
    return hashlib.sha256(_ROSTER_LABEL + _count(roster) + body).digest()


def identity_hash(roster: Sequence[RosterEntry]) -> bytes:
    """SHA-256(label || u32(count) || for each entry: u32(index) || identity)."""
    body = b"".join(struct.pack(">I", e.index) + e.identity for e in roster)
    return hashlib.sha256(_IDENTITY_LABEL + _count(roster) + body).digest()
