"""Room protocol test support: deterministic randomness, a small room on the relay double,
and an attacker that tries every byte string it holds as a key against captured frames."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

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


# -- a relay that takes over a departed member's seat (rooms.md 14) -----------------------------


@dataclass(frozen=True)
class HostileReplay:
    """A member's recorded steps from transcript.json, cut where a hostile relay acts, then
    its frames; `error` is the code the member must refuse the last frame with (None: it
    must accept every frame)."""

    name: str
    steps: list[dict[str, object]]
    error: str | None


def seat_takeover_replays(transcript: dict[str, Any]) -> list[HostileReplay]:
    """From the recorded room (alice, bob, carol; carol leaves): alice's steps up to carol's
    `left`, then what a relay holding the room link and carol's signing seed makes of them
    (an update in her name: refused for its member tag). Her `leave` no longer shows the
    relay that seed (it is sealed under the epoch link, rooms.md 11.4); a member of her epoch
    can open it, which is where it is taken from here, so the member tag is shown to hold
    on its own. Then what a copy of carol's state sends after alice saw her `left` (refused
    as from someone who left; the same commit without the `left` is taken, so that refusal
    is the `left`'s doing)."""
    from atopos.crypto.room_keys import derive_room_secrets
    from atopos.crypto.room_published_seeds import open_published_seeds
    from atopos.crypto.room_roster import RosterEntry
    from atopos.crypto.room_transcript import CommitReason, membership_after, transcript_after
    from atopos.protocol.room_commit import build_commit, read_commit
    from atopos.protocol.room_link import parse_room_link
    from atopos.protocol.room_wire import Commit, Leave, Message, decode_client_frame
    from atopos.protocol.room_wire import encode_frame as encode

    members = {member["name"]: member for member in transcript["members"]}
    alice, carol = members["alice"], members["carol"]
    leave = decode_client_frame(next(t for t in carol["sent"] if '"t":"leave"' in t))
    assert isinstance(leave, Leave)
    frames = [step.get("receive") for step in alice["steps"]]
    cut = next(
        i
        for i, text in enumerate(frames)
        if isinstance(text, str) and text.startswith('{"t":"left"') and '"index":2' in text
    )
    prefix, left_step = alice["steps"][:cut], alice["steps"][cut]
    left = decode_relay_frame(str(left_step["receive"]))
    seq = left.seq  # type: ignore[union-attr]

    # What the relay derives with the link: the room secrets and the last commit's state.
    link = parse_room_link(members["bob"]["link"])
    assert link.s_link is not None
    room_id = link.room_id
    secrets = derive_room_secrets(
        link.s_link, b64url_decode(transcript["creation"]["s_relay"]), room_id
    )
    commits = [
        f
        for f in (decode_relay_frame(str(s["receive"])) for s in prefix if "receive" in s)
        if isinstance(f, RelayedCommit)
    ]
    view = read_commit(room_id, commits[-1])
    # A copy of carol's state from just before she left, still able to tag and sign.
    ghost = RoomMember(
        parse_room_link(carol["link"]),
        carol["name"],
        SeededRandom(f"atopos room vectors/{carol['random_label']}"),
    )
    for step in carol["steps"]:
        if step.get("command") == "leave":
            break
        if "receive" in step:
            ghost.receive(step["receive"], 0)
        else:
            getattr(ghost, step["command"])(*step["args"])
        ghost.outgoing()
    # Carol's seeds, opened as a member of her last epoch can (the relay cannot).
    assert leave.epoch is not None
    assert leave.sealed_seeds is not None
    assert ghost._epoch_link is not None
    (seed,) = open_published_seeds(
        ghost._epoch_link, room_id, leave.epoch, 2, b64url_decode(leave.sealed_seeds)
    )
    assert seed == ghost._keys.signing_seed()
    mine = MemberKeys.generate(SeededRandom("relay's own keys"))
    forged = build_commit(
        secrets=secrets,
        committer=2,
        epoch=view.epoch + 1,
        reason=CommitReason.UPDATE,
        roster=[
            RosterEntry(e.index, e.identity, mine.sign_key, mine.seal_key, e.profile)
            if e.index == 2
            else e
            for e in view.roster
        ],
        joins=[],
        previous_link=secrets.epoch_base,  # the only epoch link it can derive
        transcript=transcript_after(view.signing_input),
        membership=membership_after(view.membership, view.reason, view.epoch, view.roster),
        signer=MemberKeys(seed, bytes(32)),
        random_bytes=SeededRandom("relay's epoch"),
    ).frame

    ghost.send_text("still here")
    ghost.update(0)
    message, commit = map(decode_client_frame, ghost.outgoing())
    assert isinstance(message, Message)
    assert isinstance(commit, Commit)

    def relayed(frame: Commit | Message, at: int) -> dict[str, object]:
        fields = {f: getattr(frame, f) for f in frame.__struct_fields__}
        made = RelayedCommit if isinstance(frame, Commit) else RelayedMessage
        return {"receive": encode(made(seq=at, **fields))}

    return [
        HostileReplay("forged update, left withheld", [*prefix, relayed(forged, seq)], "bad_auth"),
        HostileReplay("departed member's commit", [*prefix, relayed(commit, seq)], None),
        HostileReplay(
            "departed member's commit after left",
            [*prefix, left_step, relayed(commit, seq + 1)],
            "bad_commit",
        ),
        HostileReplay(
            "departed member's message after left",
            [*prefix, left_step, relayed(message, seq + 1)],
            "bad_signature",
        ),
    ]
