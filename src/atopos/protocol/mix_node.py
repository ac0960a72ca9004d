"""What a mix node or gateway does with one packet, sans-I/O (docs/protocol/mixnet.md,
"Processing").

`MixCore.receive(packet)` unwraps one Sphinx layer and answers with one outcome: forward to
a node of the topology after a delay, store as mail (gateways), a loop of this node's own
came home, or drop. Which one follows from an explicit table over (role, Sphinx command,
where the packet goes), so every legal move is listed in `TRANSITIONS`; anything else is
dropped. Replay tags are kept per key epoch, bounded, and forgotten with the epoch's key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from atopos.crypto.sphinx import (
    COMMAND_DELIVER,
    COMMAND_DELIVER_REPLY,
    COMMAND_RELAY,
    Deliver,
    DeliverReply,
    InvalidPacket,
    Relay,
    process_packet,
)
from atopos.protocol.mix_link import MailKind
from atopos.protocol.mix_topology import MixNode, Topology

__all__ = [
    "DEFAULT_MAX_REPLAY_TAGS",
    "TRANSITIONS",
    "Action",
    "Destination",
    "DropReason",
    "Dropped",
    "Forward",
    "LoopHome",
    "MixCore",
    "Role",
    "StoreMail",
]

DEFAULT_MAX_REPLAY_TAGS = 1_000_000


class Role(Enum):
    MIX = "mix"
    GATEWAY = "gateway"


class Destination(Enum):
    """Where an unwrapped packet points: a node of the topology, this node, a mailbox (or
    SURB id), or an address that is none of these."""

    NODE = "node"
    SELF = "self"
    MAILBOX = "mailbox"
    UNKNOWN = "unknown"


class Action(Enum):
    FORWARD = "forward"
    STORE_MAIL = "store mail"
    LOOP_HOME = "loop home"


# Every legal move; a (role, command, destination) not listed is dropped.
TRANSITIONS: Mapping[tuple[Role, int, Destination], Action] = {
    (Role.MIX, COMMAND_RELAY, Destination.NODE): Action.FORWARD,
    (Role.MIX, COMMAND_RELAY, Destination.SELF): Action.FORWARD,
    (Role.MIX, COMMAND_DELIVER, Destination.SELF): Action.LOOP_HOME,
    (Role.GATEWAY, COMMAND_RELAY, Destination.NODE): Action.FORWARD,
    (Role.GATEWAY, COMMAND_RELAY, Destination.SELF): Action.FORWARD,
    (Role.GATEWAY, COMMAND_DELIVER, Destination.SELF): Action.LOOP_HOME,
    (Role.GATEWAY, COMMAND_DELIVER, Destination.MAILBOX): Action.STORE_MAIL,
    (Role.GATEWAY, COMMAND_DELIVER_REPLY, Destination.MAILBOX): Action.STORE_MAIL,
}


class DropReason(Enum):
    INVALID = "invalid"  # wrong size, bad MAC, bad payload tag, unknown command
    REPLAY = "replay"
    REPLAY_STORE_FULL = "replay store full"
    NOT_ALLOWED = "not allowed"  # not in TRANSITIONS


@dataclass(frozen=True, slots=True)
class Forward:
    next_node: MixNode
    delay_ms: int
    packet: bytes


@dataclass(frozen=True, slots=True)
class StoreMail:
    kind: MailKind
    address: bytes
    content: bytes
    delay_ms: int


@dataclass(frozen=True, slots=True)
class LoopHome:
    message: bytes
    delay_ms: int


@dataclass(frozen=True, slots=True)
class Dropped:
    reason: DropReason


Outcome = Forward | StoreMail | LoopHome | Dropped


class MixCore:
    """One node's packet processing: its keys by epoch, the topology, the replay tags."""

    def __init__(
        self,
        node_id: bytes,
        role: Role,
        keys: Mapping[int, X25519PrivateKey],
        topology: Topology,
        max_replay_tags: int = DEFAULT_MAX_REPLAY_TAGS,
    ) -> None:
        if not keys:
            raise ValueError("a node has at least one key")
        self.node_id = bytes(node_id)
        self.role = role
        self.topology = topology
        self._keys = dict(keys)
        self._replay_tags: dict[int, set[bytes]] = {epoch: set() for epoch in keys}
        self._max_replay_tags = max_replay_tags

    def add_key(self, epoch: int, key: X25519PrivateKey) -> None:
        """A new key epoch; the older ones keep working until retired."""
        self._keys[epoch] = key
        self._replay_tags.setdefault(epoch, set())

    def retire_epoch(self, epoch: int) -> None:
        """Forget the key of `epoch` and, with it, its replay tags."""
        self._keys.pop(epoch, None)
        self._replay_tags.pop(epoch, None)

    def replay_tag_count(self, epoch: int) -> int:
        return len(self._replay_tags.get(epoch, ()))

    def _unwrap(self, packet: bytes) -> tuple[int, Relay | Deliver | DeliverReply] | None:
        # Newest epoch first: during a key change most packets use the new key.
        for epoch in sorted(self._keys, reverse=True):
            try:
                return epoch, process_packet(self._keys[epoch], packet)
            except InvalidPacket:
                continue
        return None

    def _destination(self, command: int, address: bytes) -> Destination:
        if address == self.node_id:
            return Destination.SELF
        if command == COMMAND_RELAY:
            return Destination.NODE if self.topology.node(address) else Destination.UNKNOWN
        return Destination.MAILBOX

    def receive(self, packet: bytes) -> Outcome:
        """The outcome for one packet that arrived on a link."""
        unwrapped = self._unwrap(packet)
        if unwrapped is None:
            return Dropped(DropReason.INVALID)
        epoch, result = unwrapped
        tags = self._replay_tags[epoch]
        if result.replay_tag in tags:
            return Dropped(DropReason.REPLAY)
        if len(tags) >= self._max_replay_tags:
            # Fail closed: forgetting tags would let replays through.
            return Dropped(DropReason.REPLAY_STORE_FULL)
        tags.add(result.replay_tag)
        if isinstance(result, Relay):
            command, address = COMMAND_RELAY, result.next_address
        elif isinstance(result, Deliver):
            command, address = COMMAND_DELIVER, result.address
        else:
            command, address = COMMAND_DELIVER_REPLY, result.surb_id
        action = TRANSITIONS.get((self.role, command, self._destination(command, address)))
        if action is Action.FORWARD and isinstance(result, Relay):
            next_node = self.topology.node(address)
            assert next_node is not None
            return Forward(next_node, result.delay_ms, result.packet)
        if action is Action.LOOP_HOME and isinstance(result, Deliver):
            return LoopHome(result.message, result.delay_ms)
        if action is Action.STORE_MAIL and isinstance(result, Deliver):
            return StoreMail(MailKind.MESSAGE, address, result.message, result.delay_ms)
        if action is Action.STORE_MAIL and isinstance(result, DeliverReply):
            return StoreMail(MailKind.REPLY, address, result.payload, result.delay_ms)
        return Dropped(DropReason.NOT_ALLOWED)
