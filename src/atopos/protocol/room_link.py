"""Room links (docs/protocol/rooms.md, "Links").

    /r/{room_id}#{S_link}          member link: anyone holding it may join
    /r/{room_id}#{S_link}.{C}      creator link: also holds C, the only way to end the room
    /r/{room_id}#i.{I}             single-use invite link

room_id is 16 bytes, S_link, C and I 32 bytes each, all unpadded base64url. The fragment
never reaches a server.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.crypto.room_keys import ROOM_ID_BYTES, SECRET_BYTES, ProofKind
from atopos.protocol.room_errors import RoomProtocolError

__all__ = ["RoomLink", "parse_room_link"]

_PATH_PREFIX = "/r/"
_INVITE_PREFIX = "i."


@dataclass(frozen=True, slots=True)
class RoomLink:
    """What a link holds. Exactly one of `s_link` and `invite_secret` is set; a creator link
    has `s_link` and `creator_secret`."""

    base_url: str
    room_id: bytes
    s_link: bytes | None = None
    creator_secret: bytes | None = None
    invite_secret: bytes | None = None

    def __post_init__(self) -> None:
        if len(self.room_id) != ROOM_ID_BYTES:
            raise ValueError("a room id is 16 bytes")
        if (self.s_link is None) == (self.invite_secret is None):
            raise ValueError("a room link holds S_link or an invite secret, not both")
        if self.creator_secret is not None and self.s_link is None:
            raise ValueError("a creator link holds S_link")
        for value in (self.s_link, self.creator_secret, self.invite_secret):
            if value is not None and len(value) != SECRET_BYTES:
                raise ValueError("link secrets are 32 bytes")

    @property
    def proof_kind(self) -> ProofKind:
        if self.invite_secret is not None:
            return ProofKind.INVITE
        return ProofKind.LINK if self.creator_secret is None else ProofKind.CREATOR

    @property
    def proof_secret(self) -> bytes:
        secret = {
            ProofKind.INVITE: self.invite_secret,
            ProofKind.CREATOR: self.creator_secret,
            ProofKind.LINK: self.s_link,
        }[self.proof_kind]
        assert secret is not None
        return secret

    @property
    def room_path(self) -> str:
        return _PATH_PREFIX + b64url_encode(self.room_id)

    def text(self) -> str:
        if self.invite_secret is not None:
            fragment = _INVITE_PREFIX + b64url_encode(self.invite_secret)
        else:
            assert self.s_link is not None
            fragment = b64url_encode(self.s_link)
            if self.creator_secret is not None:
                fragment += "." + b64url_encode(self.creator_secret)
        return f"{self.base_url.rstrip('/')}{self.room_path}#{fragment}"

    def __repr__(self) -> str:
        return f"RoomLink({self.base_url!r}, kind={self.proof_kind.name})"


def _secret(text: str) -> bytes:
    try:
        raw = b64url_decode(text)
    except ValueError:
        raw = b""
    if len(raw) != SECRET_BYTES:
        raise RoomProtocolError("malformed", "The room link is damaged; copy it again.")
    return raw


def parse_room_link(text: str) -> RoomLink:
    """Parse a room link strictly; RoomProtocolError("malformed") with one sentence."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise RoomProtocolError("malformed", "A room link starts with http:// or https://.")
    if _PATH_PREFIX not in parts.path:
        raise RoomProtocolError("malformed", "This is not a room link (no /r/ in it).")
    prefix, room_text = parts.path.rsplit(_PATH_PREFIX, 1)
    base = f"{parts.scheme}://{parts.netloc}{prefix}"
    try:
        room_id = b64url_decode(room_text)
    except ValueError:
        room_id = b""
    if len(room_id) != ROOM_ID_BYTES:
        raise RoomProtocolError("malformed", "The room link is damaged; copy it again.")
    fragment = parts.fragment
    if fragment.startswith(_INVITE_PREFIX):
        return RoomLink(base, room_id, invite_secret=_secret(fragment[len(_INVITE_PREFIX) :]))
    link_text, dot, creator_text = fragment.partition(".")
    creator = _secret(creator_text) if dot else None
    return RoomLink(base, room_id, s_link=_secret(link_text), creator_secret=creator)
