"""Room frames on the wire (docs/protocol/rooms.md, "Frames").

Every frame is one WebSocket text message holding one JSON object whose `"t"` names its
type. Field sets are closed (an unknown field is refused), integers are bounded, and binary
values are unpadded base64url of an exact length in its one canonical spelling (checked by
pattern before any decoding). `decode_client_frame` is what the relay runs on what a member
sends; `decode_relay_frame` is what a member runs on what the relay sends. Both raise only
`RoomProtocolError`.
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeAlias

import msgspec

from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.crypto.room_published_seeds import (
    MAX_SEALED_SEEDS_BYTES,
    MIN_SEALED_SEEDS_BYTES,
    sealed_seed_count,
)
from atopos.protocol.room_errors import RoomProtocolError

__all__ = [
    "B16",
    "B32",
    "B48",
    "B64",
    "MAX_CONTROL_FRAME_CHARS",
    "MAX_FRAME_CHARS",
    "MAX_MEMBERS",
    "PROTOCOL_VERSION",
    "Admit",
    "BProfile",
    "Challenge",
    "Change",
    "ClientFrame",
    "Closing",
    "Commit",
    "End",
    "Ended",
    "Error",
    "Join",
    "JoinItem",
    "Knock",
    "Leave",
    "Left",
    "Message",
    "Prove",
    "Refuse",
    "RelayErrorCode",
    "RelayFrame",
    "RelayedCommit",
    "RelayedMessage",
    "RosterItem",
    "SealedItem",
    "SealedSeeds",
    "Sent",
    "Unlock",
    "Welcome",
    "b64",
    "decode_client_frame",
    "decode_relay_frame",
    "encode_frame",
    "unb64",
]

PROTOCOL_VERSION = 1
MAX_MEMBERS = 500
# A commit or change for 500 members is about 250 KB; every other frame is far smaller.
MAX_FRAME_CHARS = 1 << 20
MAX_CONTROL_FRAME_CHARS = 1 << 16
_MAX_CIPHERTEXT_CHARS = 23232  # base64url of Padmé(4 + 16384) + 16 = 17424 bytes
_MIN_CIPHERTEXT_CHARS = 704  # base64url of 512 + 16 bytes

_ALPHABET = "[A-Za-z0-9_-]"


def _exact(size: int) -> str:
    """A pattern for the one canonical unpadded base64url spelling of `size` bytes."""
    full, rest = divmod(size, 3)
    tail = {0: "", 1: _ALPHABET + "[AQgw]", 2: _ALPHABET * 2 + "[AEIMQUYcgkosw048]"}[rest]
    return rf"^(?:{_ALPHABET}{{4}}){{{full}}}{tail}\Z"


def _chars(size: int) -> int:
    """How many characters unpadded base64url spells `size` bytes with."""
    return (size * 4 + 2) // 3


def _binary(size: int) -> object:
    return Annotated[str, msgspec.Meta(pattern=_exact(size))]


B16: TypeAlias = _binary(16)  # type: ignore[valid-type]
B32: TypeAlias = _binary(32)  # type: ignore[valid-type]
B48: TypeAlias = _binary(48)  # type: ignore[valid-type]
B64: TypeAlias = _binary(64)  # type: ignore[valid-type]
BProfile: TypeAlias = _binary(156)  # type: ignore[valid-type]
Ciphertext = Annotated[
    str,
    msgspec.Meta(
        min_length=_MIN_CIPHERTEXT_CHARS,
        max_length=_MAX_CIPHERTEXT_CHARS,
        pattern=rf"^{_ALPHABET}+\Z",
    ),
]
# Sealed signing seeds (section 11.4): canonical base64url of 12 + 32k + 16 bytes, 1 <= k <= 64;
# the pattern and bounds here, the exact size in `_check_published`.
SealedSeeds = Annotated[
    str,
    msgspec.Meta(
        min_length=_chars(MIN_SEALED_SEEDS_BYTES),
        max_length=_chars(MAX_SEALED_SEEDS_BYTES),
        pattern=rf"^(?:{_ALPHABET}{{4}})*(?:{_ALPHABET}[AQgw]|{_ALPHABET}{{2}}[AEIMQUYcgkosw048])?\Z",
    ),
]
Index = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**53 - 1)]
Message_ = Annotated[str, msgspec.Meta(max_length=200)]


class _Frame(msgspec.Struct, forbid_unknown_fields=True, tag_field="t", frozen=True):
    pass


class RosterItem(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    index: Index
    identity: B32
    sign_key: B32
    seal_key: B32
    profile: BProfile


class JoinItem(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    index: Index
    sign_key: B32
    seal_key: B32
    nonce: B32
    auth: B32
    profile: BProfile
    admitted_by: Index | None = None
    admission: B64 | None = None


class SealedItem(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    index: Index
    ephemeral: B32
    secret: B48


_Roster = Annotated[list[RosterItem], msgspec.Meta(max_length=MAX_MEMBERS)]
_Joins = Annotated[list[JoinItem], msgspec.Meta(max_length=MAX_MEMBERS)]
_Sealed = Annotated[list[SealedItem], msgspec.Meta(max_length=MAX_MEMBERS)]
_Indices = Annotated[list[Index], msgspec.Meta(max_length=MAX_MEMBERS)]
Epoch = Annotated[int, msgspec.Meta(ge=1, le=2**53 - 1)]


def _check_published(epoch: int | None, sealed_seeds: str | None) -> None:
    """`epoch` and `sealed_seeds` come together or not at all (a leaver with no epoch
    publishes nothing), and the seeds are 12 + 32k + 16 bytes (ValueError, hence malformed)."""
    if (epoch is None) != (sealed_seeds is None):
        raise ValueError("epoch and sealed_seeds come together")
    _seed_count(sealed_seeds)


# -- member -> relay -----------------------------------------------------------------------


class Prove(_Frame, tag="prove", frozen=True):
    """The answer to the relay's challenge, signed with a key derived from S_link, I or C."""

    kind: Literal["link", "invite", "creator"]
    key: B32
    sig: B64


class Join(_Frame, tag="join", frozen=True):
    """A joiner's fresh per-room keys, its member-auth tag over them and its sealed name."""

    sign_key: B32
    seal_key: B32
    auth: B32
    profile: BProfile


class Commit(_Frame, tag="commit", frozen=True):
    """A new epoch: roster, evidence for each joiner, the epoch secret sealed to each member."""

    epoch: Count
    committer: Index
    reason: Literal["found", "change", "update"]
    transcript: B32
    membership: B32
    roster: _Roster
    joins: _Joins
    sealed: _Sealed
    room_auth: B32
    member_tag: B32
    confirm: B32
    sig: B64


class Message(_Frame, tag="msg", frozen=True):
    epoch: Count
    sender: Index
    counter: Count
    ct: Ciphertext
    sig: B64


class Admit(_Frame, tag="admit", frozen=True):
    """A current member admits the knocking joiner `index` (knock mode)."""

    index: Index
    sig: B64


class Refuse(_Frame, tag="refuse", frozen=True):
    """A current member refuses joiner `index` (knock mode, or its member-auth failed)."""

    index: Index


class Leave(_Frame, tag="leave", frozen=True, omit_defaults=True):
    """The member leaves and publishes every Ed25519 seed it signed with (deniability),
    sealed under its epoch's link (section 11.4); a member with no epoch sends neither."""

    epoch: Epoch | None = None
    sealed_seeds: SealedSeeds | None = None

    def __post_init__(self) -> None:
        _check_published(self.epoch, self.sealed_seeds)

    @property
    def published_seeds(self) -> int:
        """How many seeds it published (sealed): 0 for none."""
        return _seed_count(self.sealed_seeds)


class End(_Frame, tag="end", frozen=True):
    """The creator ends the room: a creator-key signature over this connection's challenge."""

    sig: B64


ClientFrame: TypeAlias = Prove | Join | Commit | Message | Admit | Refuse | Leave | End


# -- relay -> member -----------------------------------------------------------------------


class Challenge(_Frame, tag="challenge", frozen=True):
    v: Literal[1]
    nonce: B32


class Unlock(_Frame, tag="unlock", frozen=True, omit_defaults=True):
    """Sent after a valid proof: S_relay (and for an invite, S_link sealed under it)."""

    s_relay: B32
    knock: bool
    invite_only: bool
    expires_at: Count
    name: BProfile
    sealed_link: B48 | None = None


class Welcome(_Frame, tag="welcome", frozen=True):
    """The joiner's index; the next room frame it gets carries sequence number seq + 1."""

    seq: Count
    index: Index
    epoch: Count


class Knock(_Frame, tag="knock", frozen=True):
    seq: Count
    index: Index
    sign_key: B32
    seal_key: B32
    nonce: B32
    auth: B32
    profile: BProfile


class Change(_Frame, tag="change", frozen=True):
    """The relay orders a membership change and names who commits epoch `epoch`."""

    seq: Count
    epoch: Count
    committer: Index
    reason: Literal["found", "change"]
    roster: _Roster
    joins: _Joins
    leaves: _Indices


class RelayedCommit(_Frame, tag="commit", frozen=True):
    seq: Count
    epoch: Count
    committer: Index
    reason: Literal["found", "change", "update"]
    transcript: B32
    membership: B32
    roster: _Roster
    joins: _Joins
    sealed: _Sealed
    room_auth: B32
    member_tag: B32
    confirm: B32
    sig: B64


class RelayedMessage(_Frame, tag="msg", frozen=True):
    seq: Count
    epoch: Count
    sender: Index
    counter: Count
    ct: Ciphertext
    sig: B64


class Sent(_Frame, tag="sent", frozen=True):
    """To a message's author instead of its own frame: the sequence number it got."""

    seq: Count
    epoch: Count
    counter: Count


class Left(_Frame, tag="left", frozen=True, omit_defaults=True):
    """A member left: its `leave`'s sealed seeds passed on unchanged (neither when it
    vanished or had no epoch)."""

    seq: Count
    index: Index
    epoch: Epoch | None = None
    sealed_seeds: SealedSeeds | None = None

    def __post_init__(self) -> None:
        _check_published(self.epoch, self.sealed_seeds)

    @property
    def published_seeds(self) -> int:
        """How many seeds it published (sealed): 0 for none."""
        return _seed_count(self.sealed_seeds)


class Closing(_Frame, tag="closing", frozen=True):
    """The room ends in `seconds`: members leave (publishing their sealed seeds) before it does."""

    seq: Count
    seconds: Annotated[int, msgspec.Meta(ge=0, le=60)]
    reason: Literal["creator", "ttl", "empty"]


class Ended(_Frame, tag="ended", frozen=True):
    reason: Literal["creator", "ttl", "empty"]


# The codes of the relay's `error` frame (section 13).
RelayErrorCode: TypeAlias = Literal[
    "malformed",
    "too_large",
    "unexpected",
    "bad_proof",
    "bad_commit",
    "stale",
    "not_admitted",
    "ended",
    "full",
    "rate_limited",
]


class Error(_Frame, tag="error", frozen=True):
    code: RelayErrorCode
    message: Message_


RelayFrame: TypeAlias = (
    Challenge
    | Unlock
    | Welcome
    | Knock
    | Change
    | RelayedCommit
    | RelayedMessage
    | Sent
    | Left
    | Closing
    | Ended
    | Error
)

_CLIENT_DECODER = msgspec.json.Decoder(ClientFrame)
_RELAY_DECODER = msgspec.json.Decoder(RelayFrame)
_LARGE = (Commit, Change, RelayedCommit)
_ENCODER = msgspec.json.Encoder()


def _decode(decoder: msgspec.json.Decoder[object], data: str | bytes) -> object:
    if not isinstance(data, str | bytes):
        raise RoomProtocolError("malformed", "A frame is a text message.")
    if len(data) > MAX_FRAME_CHARS:
        raise RoomProtocolError("too_large", "The frame is too large.")
    try:
        frame = decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, UnicodeEncodeError, RecursionError):
        raise RoomProtocolError("malformed", "The frame is not a valid room frame.") from None
    if not isinstance(frame, _LARGE) and len(data) > MAX_CONTROL_FRAME_CHARS:
        raise RoomProtocolError("too_large", "The frame is too large.")
    return frame


def decode_client_frame(data: str | bytes) -> ClientFrame:
    """A frame a member sent, strictly validated; RoomProtocolError otherwise."""
    frame = _decode(_CLIENT_DECODER, data)
    return frame  # type: ignore[return-value]


def decode_relay_frame(data: str | bytes) -> RelayFrame:
    """A frame the relay sent, strictly validated; RoomProtocolError otherwise."""
    frame = _decode(_RELAY_DECODER, data)
    return frame  # type: ignore[return-value]


def encode_frame(frame: ClientFrame | RelayFrame) -> str:
    """Compact JSON, fields in declaration order: what goes into the text message."""
    return _ENCODER.encode(frame).decode("utf-8")


def _seed_count(sealed_seeds: str | None) -> int:
    return 0 if sealed_seeds is None else sealed_seed_count(len(b64url_decode(sealed_seeds)))


def b64(data: bytes) -> str:
    return b64url_encode(data)


def unb64(text: str) -> bytes:
    """Bytes of a field the decoder already checked; RoomProtocolError if it was not."""
    try:
        return b64url_decode(text)
    except ValueError:
        raise RoomProtocolError("malformed", "A binary field is not base64url.") from None
