"""A mix node or gateway as an asyncio process (docs/mixnet.md, docs/protocol/mixnet.md).

Packets arrive as fixed-size frames on TCP links, go through the sans-I/O `MixCore`, and are
held for the delay their routing information names before they leave on the link to the
next node. Gateways also keep mailboxes for the clients attached to them. Each node sends its
own loop and drop cover at Poisson rates, built like any client packet, so on the wire its
cover looks like everything else. Every wait has a timeout and every queue a cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from atopos.clock import Clock
from atopos.crypto.randomness import RandomBytes
from atopos.crypto.sphinx import ADDRESS_BYTES, MESSAGE_BYTES, create_forward_packet
from atopos.mixnet.link import OutboundLink, read_frame
from atopos.mixnet.mailboxes import Mailboxes
from atopos.mixnet.settings import NodeSettings
from atopos.protocol.mix_link import (
    InvalidFrame,
    Mail,
    MailboxOpen,
    PacketFrame,
    decode_frame,
    encode_frame,
)
from atopos.protocol.mix_node import Dropped, Forward, LoopHome, MixCore, Role, StoreMail
from atopos.protocol.mix_route import choose_index, delayed_hop, exponential
from atopos.protocol.mix_topology import MixNode, Topology

__all__ = ["MixNodeService", "Observation"]

_SWEEP_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Observation:
    """What this node learnt from one packet (kept only with `record_observations`): the
    link it came in on, when, where it went next (a node id or a mailbox / SURB id) and
    after what delay."""

    predecessor: str
    outcome: str
    next_hop: bytes | None
    at: float
    delay_ms: int | None


class MixNodeService:
    """One mix node (Role.MIX, in a layer) or gateway (Role.GATEWAY)."""

    def __init__(
        self,
        me: MixNode,
        keys: Mapping[int, X25519PrivateKey],
        topology: Topology,
        clock: Clock,
        random_bytes: RandomBytes,
        settings: NodeSettings,
        listen_port: int | None = None,
    ) -> None:
        if topology.node(me.node_id) != me:
            raise ValueError("this node is not in the topology")
        role = Role.MIX if topology.layer_of(me.node_id) is not None else Role.GATEWAY
        self.me = me
        self.core = MixCore(me.node_id, role, keys, topology, settings.max_replay_tags)
        self._clock = clock
        self._random_bytes = random_bytes
        self.settings = settings
        self._listen_port = me.port if listen_port is None else listen_port
        self._links: dict[bytes, OutboundLink] = {}
        self._pending: set[asyncio.TimerHandle] = set()
        self._connections: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._server: asyncio.Server | None = None
        self.counters: Counter[str] = Counter()
        self.observations: deque[Observation] = deque(maxlen=100_000)
        self.mailboxes = Mailboxes(
            clock,
            max_mailboxes=settings.max_mailboxes,
            max_messages=settings.mailbox_messages,
            ttl=settings.mailbox_ttl,
        )

    @property
    def role(self) -> Role:
        return self.core.role

    async def start(self, listen_socket: socket.socket | None = None) -> None:
        """Listen (on `listen_socket` when given, bound already), start the cover streams."""
        if listen_socket is not None:
            self._server = await asyncio.start_server(self._accept, sock=listen_socket)
        else:
            self._server = await asyncio.start_server(self._accept, self.me.host, self._listen_port)
        loop = asyncio.get_running_loop()
        if self.settings.loop_rate > 0:
            self._tasks.append(loop.create_task(self._cover(self.settings.loop_rate, True)))
        if self.settings.drop_rate > 0:
            self._tasks.append(loop.create_task(self._cover(self.settings.drop_rate, False)))
        if self.role is Role.GATEWAY:
            self._tasks.append(loop.create_task(self._sweep()))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Closing the sockets ends the connection handlers (cancelling them would make
        # asyncio's stream callback log the cancellation as an error).
        for writer in self._writers:
            writer.transport.abort()
        if self._connections:
            await asyncio.wait(self._connections, timeout=1.0)
        for link in self._links.values():
            await link.close()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._server.wait_closed()

    def links(self) -> list[OutboundLink]:
        """The outbound links open now (tests map a peer address back to its node)."""
        return list(self._links.values())

    def use_topology(self, topology: Topology) -> None:
        """A newer topology (a node stays, or the caller closes it)."""
        if topology.node(self.me.node_id) is None:
            raise ValueError("this node is not in the new topology")
        self.core.topology = topology

    # Inbound links.

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= self.settings.max_connections:
            writer.close()
            return
        self._connections.add(task)
        self._writers.add(writer)
        peer = writer.get_extra_info("peername")
        predecessor = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"
        outbox: asyncio.Queue[bytes] | None = None
        mailbox_id = b""
        pusher: asyncio.Task[None] | None = None
        try:
            while (data := await read_frame(reader, self.settings.idle_timeout)) is not None:
                try:
                    frame = decode_frame(data)
                except InvalidFrame:
                    self.counters["invalid frame"] += 1
                    break
                if isinstance(frame, PacketFrame):
                    self._receive(frame.packet, predecessor)
                elif isinstance(frame, MailboxOpen) and self._may_open_mailbox(outbox):
                    outbox = asyncio.Queue(self.settings.mailbox_messages)
                    if not self.mailboxes.attach(frame.mailbox_id, outbox):
                        break
                    mailbox_id = frame.mailbox_id
                    pusher = asyncio.get_running_loop().create_task(self._push(writer, outbox))
                else:
                    break
        finally:
            if outbox is not None:
                self.mailboxes.detach(mailbox_id, outbox)
            if pusher is not None:
                pusher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pusher
            writer.close()
            self._writers.discard(writer)
            self._connections.discard(task)

    def _may_open_mailbox(self, outbox: asyncio.Queue[bytes] | None) -> bool:
        """Only a gateway has mailboxes, and a connection opens at most one."""
        return self.role is Role.GATEWAY and outbox is None

    async def _push(self, writer: asyncio.StreamWriter, outbox: asyncio.Queue[bytes]) -> None:
        try:
            while True:
                writer.write(await outbox.get())
                async with asyncio.timeout(self.settings.write_timeout):
                    await writer.drain()
        except (OSError, TimeoutError):
            writer.close()

    def _observe(
        self,
        predecessor: str,
        outcome: str,
        next_hop: bytes | None = None,
        delay_ms: int | None = None,
    ) -> None:
        if self.settings.record_observations:
            at = self._clock.monotonic()
            self.observations.append(Observation(predecessor, outcome, next_hop, at, delay_ms))

    def _receive(self, packet: bytes, predecessor: str) -> None:
        self.counters["received"] += 1
        outcome = self.core.receive(packet)
        if isinstance(outcome, Dropped):
            self.counters[f"dropped {outcome.reason.value}"] += 1
            self._observe(predecessor, f"dropped {outcome.reason.value}")
        elif isinstance(outcome, Forward):
            self._observe(predecessor, "forward", outcome.next_node.node_id, outcome.delay_ms)
            self._later(outcome.delay_ms, partial(self._forward, outcome.next_node, outcome.packet))
        elif isinstance(outcome, StoreMail):
            self._observe(predecessor, "mail", outcome.address, outcome.delay_ms)
            frame = encode_frame(Mail(outcome.kind, outcome.address, outcome.content))
            self._later(outcome.delay_ms, partial(self._store, outcome.address, frame))
        elif isinstance(outcome, LoopHome):
            self._observe(predecessor, "loop home")
            self.counters["loops home"] += 1

    def _later(self, delay_ms: int, action: Callable[[], None]) -> None:
        if len(self._pending) >= self.settings.max_pending:
            self.counters["dropped queue full"] += 1
            return
        loop = asyncio.get_running_loop()

        def run() -> None:
            self._pending.discard(handle)
            action()

        handle = loop.call_later(delay_ms / 1000, run)
        self._pending.add(handle)

    def _store(self, address: bytes, frame: bytes) -> None:
        if self.mailboxes.store(address, frame):
            self.counters["mail stored"] += 1
        else:
            self.counters["mail discarded"] += 1

    def _forward(self, node: MixNode, packet: bytes) -> None:
        link = self._links.get(node.node_id)
        if link is None or (node.host, node.port) != link.address:
            link = self._links[node.node_id] = OutboundLink(
                node.host,
                node.port,
                queue_size=self.settings.link_queue,
                connect_timeout=self.settings.connect_timeout,
                write_timeout=self.settings.write_timeout,
                retry_delay=self.settings.retry_delay,
                on_drop=self._count_link_drops,
            )
        self.counters["forwarded"] += 1
        link.send(encode_frame(PacketFrame(packet)))

    def _count_link_drops(self, count: int) -> None:
        self.counters["dropped link"] += count

    # Cover traffic.

    def _cover_route(self, is_loop: bool) -> tuple[list[MixNode], bytes]:
        """A loop goes through every other layer and a gateway back to this node; a drop goes
        through the layers after this one to a gateway, to a random mailbox."""
        topology = self.core.topology
        pick = self._pick
        layer = topology.layer_of(self.me.node_id)
        gateway = pick(topology.gateways)
        if layer is None:
            after = [pick(nodes) for nodes in topology.layers]
            before: list[MixNode] = []
        else:
            after = [pick(nodes) for nodes in topology.layers[layer + 1 :]]
            before = [pick(nodes) for nodes in topology.layers[:layer]]
        if is_loop:
            if layer is None:
                return [*after, self.me], self.me.node_id
            return [*after, gateway, *before, self.me], self.me.node_id
        return [*after, gateway], self._random_bytes(ADDRESS_BYTES)

    def _pick(self, nodes: tuple[MixNode, ...]) -> MixNode:
        return nodes[choose_index(self._random_bytes, len(nodes))]

    async def _cover(self, rate: float, is_loop: bool) -> None:
        while True:
            await asyncio.sleep(exponential(self._random_bytes, 1.0 / rate))
            nodes, final = self._cover_route(is_loop)
            mean = self.settings.mean_delay_ms
            hops = [delayed_hop(node, self._random_bytes, mean) for node in nodes]
            message = self._random_bytes(MESSAGE_BYTES)
            packet = create_forward_packet(hops, final, message, self._random_bytes)
            self.counters["loops sent" if is_loop else "drops sent"] += 1
            self._forward(nodes[0], packet)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_SECONDS)
            self.mailboxes.sweep()
