"""Making a room on the creator's device (docs/protocol/rooms.md, "Creating a room").

`make_room` draws every secret, derives the verifiers the relay checks proofs against and
seals S_link once per invite; it returns the body to upload and the links to print. Nothing
in the body lets the relay compute a room key: S_link reaches it only sealed under invite
secrets it never sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import msgspec

from atopos.crypto.randomness import RandomBytes, draw
from atopos.crypto.room_keys import (
    ROOM_ID_BYTES,
    SECRET_BYTES,
    ProofKind,
    derive_proof_key,
    derive_room_secrets,
    room_name_aad,
    seal_invite_link,
    seal_metadata,
)
from atopos.protocol.room_link import RoomLink
from atopos.protocol.room_wire import B16, B32, B48, BProfile, b64

__all__ = [
    "DEFAULT_TTL_SECONDS",
    "MAX_INVITES",
    "MAX_TTL_SECONDS",
    "MIN_TTL_SECONDS",
    "InviteUpload",
    "NewRoom",
    "RoomCreation",
    "make_room",
]

MIN_TTL_SECONDS = 60
DEFAULT_TTL_SECONDS = 2 * 3600
MAX_TTL_SECONDS = 7 * 86400
MAX_INVITES = 100


class InviteUpload(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    verifier: B32
    sealed_link: B48


class RoomCreation(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """What the creator uploads (the relay adds its proof-of-work fields around it)."""

    room_id: B16
    s_relay: B32
    join_verifier: B32
    creator_verifier: B32
    ttl: Annotated[int, msgspec.Meta(ge=MIN_TTL_SECONDS, le=MAX_TTL_SECONDS)]
    name: BProfile
    knock: bool = False
    invite_only: bool = False
    invites: Annotated[list[InviteUpload], msgspec.Meta(max_length=MAX_INVITES)] = []


@dataclass(frozen=True, slots=True)
class NewRoom:
    creation: RoomCreation
    creator_link: RoomLink
    member_link: RoomLink
    invite_links: tuple[RoomLink, ...]


def _verifier(kind: ProofKind, secret: bytes, room_id: bytes) -> str:
    return b64(derive_proof_key(kind, secret, room_id).public_key().public_bytes_raw())


def make_room(
    base_url: str,
    random_bytes: RandomBytes,
    *,
    ttl: int = DEFAULT_TTL_SECONDS,
    knock: bool = False,
    invites: int = 0,
    invite_only: bool = False,
    name: str | None = None,
) -> NewRoom:
    """Draw room_id, S_link, S_relay, C and one I per invite; build the upload and links."""
    if not 0 <= invites <= MAX_INVITES:
        raise ValueError(f"at most {MAX_INVITES} invites")
    if invite_only and invites == 0:
        raise ValueError("an invite-only room needs invites")
    room_id = draw(random_bytes, ROOM_ID_BYTES)
    s_link = draw(random_bytes, SECRET_BYTES)
    s_relay = draw(random_bytes, SECRET_BYTES)
    creator_secret = draw(random_bytes, SECRET_BYTES)
    invite_secrets = [draw(random_bytes, SECRET_BYTES) for _ in range(invites)]
    # Always sealed (an empty name too): its AAD carries the mode flags (rooms.md 4.4).
    secrets = derive_room_secrets(s_link, s_relay, room_id)
    aad = room_name_aad(room_id, knock, invite_only)
    sealed_name = b64(seal_metadata(secrets, name or "", aad, random_bytes))
    creation = RoomCreation(
        room_id=b64(room_id),
        s_relay=b64(s_relay),
        join_verifier=_verifier(ProofKind.LINK, s_link, room_id),
        creator_verifier=_verifier(ProofKind.CREATOR, creator_secret, room_id),
        ttl=ttl,
        name=sealed_name,
        knock=knock,
        invite_only=invite_only,
        invites=[
            InviteUpload(
                verifier=_verifier(ProofKind.INVITE, secret, room_id),
                sealed_link=b64(seal_invite_link(secret, room_id, s_link)),
            )
            for secret in invite_secrets
        ],
    )
    return NewRoom(
        creation=creation,
        creator_link=RoomLink(base_url, room_id, s_link=s_link, creator_secret=creator_secret),
        member_link=RoomLink(base_url, room_id, s_link=s_link),
        invite_links=tuple(RoomLink(base_url, room_id, invite_secret=i) for i in invite_secrets),
    )
