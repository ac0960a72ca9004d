"""Room protocol test support: deterministic randomness, a small room on the relay double,
and an attacker that tries every byte string it holds as a key against captured frames."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from atopos.crypto.base64url import b64url_decode
from atopos.crypto.errors import DecryptionFailed
from atopos.crypto.room_keys import MemberKeys
from atopos.crypto.room_message import decrypt_message, message_aad
from atopos.crypto.room_ratchet import (
    EpochChains,
    MessageKeyUnavailable,
    derive_chain_key,
    message_key_from_material,
    step_chain,
)
from atopos.crypto.room_roster import roster_hash
from atopos.crypto.room_seal import open_secret, seal_aad
from atopos.protocol.room_creation import NewRoom, make_room
from atopos.protocol.room_errors import RoomProtocolError
from atopos.protocol.room_events import MessageReceived
from atopos.protocol.room_member import MemberState, RoomMember
from atopos.protocol.room_relay import Action, CloseConnection, RelayRoom, SendText, WipeRoom
from atopos.protocol.room_wire import (
    RelayedCommit,
    RelayedMessage,
    RosterItem,
    decode_relay_frame,
)
from tests.rooms_relay_double import Connection, RelayDouble

BASE_URL = "https://rooms.example"


class SeededRandom:
    """A deterministic `RandomBytes`: SHA-256 of a label and a counter (tests only)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.counter = 0

    def __call__(self, size: int) -> bytes:
        out = b""
        while len(out) < size:
            out += hashlib.sha256(f"{self.label}/{self.counter}".encode()).digest()
            self.counter += 1
        return out[:size]


@dataclass
class Room:
    new: NewRoom
    relay: RelayDouble
    members: dict[str, Connection] = field(default_factory=dict)

    def join(self, name: str, link: object | None = None) -> Connection:
        member = RoomMember(link or self.new.member_link, name, SeededRandom(f"member/{name}"))  # type: ignore[arg-type]
        connection = self.relay.connect(member)
        self.members[name] = connection
        self.relay.pump()
        return connection

    def say(self, name: str, text: str) -> None:
        self.members[name].member.send_text(text)
        self.relay.pump()

    def texts(self, name: str) -> list[tuple[int, str]]:
        return [
            (event.sender, event.text)
            for event in self.members[name].events
            if isinstance(event, MessageReceived)
        ]


def open_room(
    *names: str,
    knock: bool = False,
    invites: int = 0,
    invite_only: bool = False,
    label: str = "room",
) -> Room:
    new = make_room(
        BASE_URL,
        SeededRandom(f"{label}/create"),
        knock=knock,
        invites=invites,
        invite_only=invite_only,
        name="Plans",
    )
    room = Room(new, RelayDouble(new.creation, SeededRandom(f"{label}/relay")))
    for position, name in enumerate(names):
        room.join(name, new.creator_link if position == 0 else None)
    return room


# -- honest members over the real sans-I/O relay ----------------------------------------------

RELAY_START = 1_000_000.0
RELAY_CLOSE_CODES = {1000, 4400, 4403, 4404, 4408, 4429}


class RelayHarness:
    """Honest `RoomMember`s over the sans-I/O `RelayRoom` (tests/unit, tests/fuzz), plus raw
    connections a test drives; `now` is the clock handed to the relay."""

    def __init__(self, label: str, *, knock: bool = False) -> None:
        self.new = make_room(
            "https://x", SeededRandom(f"{label}/room"), name="Plans", ttl=3600, knock=knock
        )
        self.relay = RelayRoom(self.new.creation, created_at=RELAY_START)
        self.now = RELAY_START
        self.members: dict[int, RoomMember] = {}
        self.events: dict[int, list[object]] = {}
        self.closed: set[int] = set()
        self.close_codes: dict[int, int] = {}
        self.corpus: list[str] = []
        self.next_id = 1
        self.label = label

    def apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, SendText):
                for connection in action.connections:
                    member = self.members.get(connection)
                    if member is not None and connection not in self.closed:
                        with contextlib.suppress(RoomProtocolError):  # members may refuse
                            found = member.receive(action.text, self.now)
                            self.events.setdefault(connection, []).extend(found)
            elif isinstance(action, CloseConnection):
                assert action.code in RELAY_CLOSE_CODES
                self.closed.add(action.connection)
                self.close_codes[action.connection] = action.code
            else:
                assert isinstance(action, WipeRoom)

    def pump(self) -> None:
        for _ in range(100):
            moved = False
            for connection, member in list(self.members.items()):
                if connection in self.closed:
                    continue
                for text in member.outgoing():
                    moved = True
                    self.corpus.append(text)
                    self.apply(self.relay.receive(connection, text, self.now))
            if not moved:
                return
        raise AssertionError("the room did not settle")

    def add_member(self, name: str, creator: bool = False) -> int:
        connection = self.next_id
        self.next_id += 1
        link = self.new.creator_link if creator else self.new.member_link
        self.members[connection] = RoomMember(link, name, SeededRandom(f"{self.label}/{name}"))
        self.apply(self.relay.open(connection, SeededRandom(f"ch/{connection}")(32), self.now))
        self.pump()
        return connection

    def active(self) -> list[RoomMember]:
        return [
            m
            for c, m in self.members.items()
            if c not in self.closed and m.state is MemberState.ACTIVE
        ]


# -- the attacker -------------------------------------------------------------------------------


def held_values(*things: object) -> tuple[set[bytes], list[MemberKeys]]:
    """Every byte string (and every base64url field of every JSON frame) and every member key
    pair found anywhere inside `things`."""
    values: set[bytes] = set()
    keys: list[MemberKeys] = []
    seen: set[int] = set()

    def walk(obj: object) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, bytes | bytearray):
            values.add(bytes(obj))
        elif isinstance(obj, str):
            values.update(_decoded_fields(obj))
        elif isinstance(obj, MemberKeys):
            keys.append(obj)
        elif isinstance(obj, dict):
            for key, value in obj.items():
                walk(key)
                walk(value)
        elif isinstance(obj, list | tuple | set | frozenset):
            for item in obj:
                walk(item)
        elif dataclasses.is_dataclass(obj) or hasattr(obj, "__slots__") or hasattr(obj, "__dict__"):
            for name in _attribute_names(obj):
                walk(getattr(obj, name, None))

    for thing in things:
        walk(thing)
    return values, keys


def _attribute_names(obj: object) -> Iterator[str]:
    fields = getattr(obj, "__struct_fields__", None)
    if isinstance(fields, tuple):
        yield from fields
    for klass in type(obj).__mro__:
        slots = getattr(klass, "__slots__", ())
        yield from (slots,) if isinstance(slots, str) else slots
    yield from getattr(obj, "__dict__", {})


def _decoded_fields(text: str) -> Iterator[bytes]:
    if not text.startswith("{"):
        with contextlib.suppress(ValueError):
            yield b64url_decode(text)
        return
    import json

    try:
        document = json.loads(text)
    except ValueError:
        return
    stack: list[object] = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            with contextlib.suppress(ValueError):
                yield b64url_decode(item)


def read_with(
    values: Iterable[bytes],
    keys: Iterable[MemberKeys],
    frames: Iterable[str],
    room_id: bytes,
    chains: Iterable[EpochChains] = (),
) -> list[str]:
    """Every plaintext an attacker holding `values`, `keys` and `chains` gets out of `frames`:
    each value tried as an epoch secret, a chain key and a message-key material; each key
    pair against every sealed epoch secret (what it opens becomes an epoch secret too); each
    held chain as it is, for every counter."""
    parsed = [decode_relay_frame(text) for text in frames]
    messages = [f for f in parsed if isinstance(f, RelayedMessage)]
    commits = [f for f in parsed if isinstance(f, RelayedCommit)]
    values = {v for v in values if len(v) == 32}
    secrets = set(values)
    for commit in commits:
        digest = roster_hash(_roster(commit.roster))
        for item in commit.sealed:
            for key in keys:
                aad = seal_aad(room_id, commit.epoch, item.index, digest)
                with contextlib.suppress(DecryptionFailed):
                    secrets.add(
                        open_secret(
                            key, b64url_decode(item.ephemeral), b64url_decode(item.secret), aad
                        )
                    )
    found: list[str] = []
    for message in messages:
        ciphertext = b64url_decode(message.ct)
        aad = message_aad(room_id, message.epoch, message.sender, message.counter)
        materials: list[bytes] = list(values)
        for secret in secrets:
            chain_key = derive_chain_key(secret, room_id, message.epoch, message.sender)
            materials += _materials(chain_key, message.counter)
        for chain_key in values:
            materials += _materials(chain_key, min(message.counter, 64))
        candidates = [message_key_from_material(message.counter, m) for m in materials]
        for held in chains:
            with contextlib.suppress(MessageKeyUnavailable):
                candidates.append(copy.deepcopy(held).receive_key(message.sender, message.counter))
        for key in candidates:
            with contextlib.suppress(DecryptionFailed):
                found.append(decrypt_message(key, aad, ciphertext).decode("utf-8", "replace"))
    return found


def _materials(chain_key: bytes, up_to: int) -> list[bytes]:
    out = []
    for _ in range(up_to + 1):
        material, chain_key = step_chain(chain_key)
        out.append(material)
    return out


def _roster(items: list[RosterItem]) -> list:  # type: ignore[type-arg]
    from atopos.crypto.room_roster import RosterEntry

    return [
        RosterEntry(
            i.index,
            b64url_decode(i.identity),
            b64url_decode(i.sign_key),
            b64url_decode(i.seal_key),
            b64url_decode(i.profile),
        )
        for i in items
    ]


def chains_of(member: RoomMember) -> list[EpochChains]:
    return [epoch.chains for epoch in (member._epoch, member._previous) if epoch is not None]


def frames_after(relay: RelayDouble, seq: int) -> list[str]:
    return [t for t in relay.fanned if decode_relay_frame(t).seq > seq]  # type: ignore[union-attr]


def refused(connection: Connection) -> list[str]:
    return [error.code for error in connection.errors]


__all__ = [
    "BASE_URL",
    "RELAY_CLOSE_CODES",
    "RELAY_START",
    "RelayHarness",
    "Room",
    "RoomProtocolError",
    "SeededRandom",
    "chains_of",
    "frames_after",
    "held_values",
    "open_room",
    "read_with",
    "refused",
]
