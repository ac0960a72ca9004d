"""What the member state machine tells its application (docs/protocol/rooms.md, "Member").

Each call to `RoomMember.receive` returns a list of these. They hold what a user interface
shows; never key material.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

__all__ = [
    "EpochStarted",
    "JoinRequested",
    "MemberEvent",
    "MemberLeft",
    "MessageDelivered",
    "MessageReceived",
    "MessagesMissing",
    "RelayError",
    "RemovedFromRoom",
    "RoomClosing",
    "RoomEnded",
    "RoomUnlocked",
    "SequenceGap",
    "Welcomed",
]


@dataclass(frozen=True, slots=True)
class RoomUnlocked:
    """The relay released S_relay: the room exists; its name and remaining lifetime."""

    name: str | None
    expires_at: int
    is_knock: bool
    is_invite_only: bool


@dataclass(frozen=True, slots=True)
class Welcomed:
    index: int


@dataclass(frozen=True, slots=True)
class JoinRequested:
    """Knock mode: someone who proved knowledge of the room secret asks to be admitted."""

    index: int
    name: str


@dataclass(frozen=True, slots=True)
class EpochStarted:
    """A verified commit took effect. `safety_code` changes only when membership does."""

    epoch: int
    reason: Literal["found", "change", "update"]
    members: tuple[tuple[int, str], ...]
    joined: tuple[int, ...]
    left: tuple[int, ...]
    safety_code: str
    is_safety_code_changed: bool


@dataclass(frozen=True, slots=True)
class MessageReceived:
    sender: int
    name: str
    text: str
    epoch: int
    counter: int


@dataclass(frozen=True, slots=True)
class MessageDelivered:
    """The relay took this member's message (epoch, counter) and gave it sequence `seq`."""

    epoch: int
    counter: int
    seq: int


@dataclass(frozen=True, slots=True)
class MessagesMissing:
    """An epoch ended with counters of `sender` never delivered: the relay dropped them."""

    sender: int
    epoch: int
    counters: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SequenceGap:
    """The relay's sequence numbers jumped: frames were dropped before this one."""

    expected: int
    received: int


@dataclass(frozen=True, slots=True)
class MemberLeft:
    """Member `index` left, publishing `published_keys` signing seeds (sealed for the
    members of its epoch, section 11.4; 0: it vanished or had no epoch)."""

    index: int
    published_keys: int


@dataclass(frozen=True, slots=True)
class RemovedFromRoom:
    """A commit left this member out: it reads nothing more."""

    epoch: int


@dataclass(frozen=True, slots=True)
class RoomClosing:
    seconds: int
    reason: str


@dataclass(frozen=True, slots=True)
class RoomEnded:
    reason: str


@dataclass(frozen=True, slots=True)
class RelayError:
    code: str
    message: str


MemberEvent: TypeAlias = (
    RoomUnlocked
    | Welcomed
    | JoinRequested
    | EpochStarted
    | MessageReceived
    | MessageDelivered
    | MessagesMissing
    | SequenceGap
    | MemberLeft
    | RemovedFromRoom
    | RoomClosing
    | RoomEnded
    | RelayError
)
