"""The mixnet client transport (docs/mixnet.md, "Clients").

A client keeps one connection to its gateway, where its mailbox is. It sends Sphinx packets
at a constant Poisson rate whether or not it has anything to say: each tick sends the next
queued message, or else a drop cover packet (to a random mailbox), so an observer of the
client's link sees the same rate idle and chatting. A second Poisson stream sends loops
through the whole network back to its own mailbox; a loop that does not come back in time
makes the mix nodes on its route suspect, and routes prefer the least suspect node of each
layer: that is how a client routes around a dead node until the next topology drops it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from atopos.clock import Clock
from atopos.crypto.errors import DecryptionFailed
from atopos.crypto.randomness import RandomBytes, draw
from atopos.crypto.sphinx import (
    ADDRESS_BYTES,
    MESSAGE_BYTES,
    InvalidPacket,
    Surb,
    SurbSecrets,
    create_forward_packet,
    create_reply_packet,
    create_surb,
    open_reply,
)
from atopos.errors import NetworkError, TooLarge
from atopos.mixnet.link import read_frame
from atopos.mixnet.settings import ClientSettings
from atopos.protocol.mix_link import (
    InvalidFrame,
    Mail,
    MailboxOpen,
    MailKind,
    PacketFrame,
    decode_frame,
    encode_frame,
)
from atopos.protocol.mix_message import (
    MAX_DATA_BYTES,
    MessageKind,
    MixAddress,
    open_message,
    seal_message,
)
from atopos.protocol.mix_route import choose_index, choose_route, exponential
from atopos.protocol.mix_topology import MixNode, Topology

__all__ = ["MixnetClient"]

_LOOP_ID_BYTES = 16
# A loop counted lost is remembered this many loop timeouts, in case it comes back late.
_LOOP_MEMORY = 10
# The gateway pushes mail as it arrives; a client idle this long still hears its loops.
_READ_IDLE_SECONDS = 3600.0
# SURBs this client handed out whose reply has not come back; the oldest are forgotten first.
MAX_OPEN_SURBS = 256


@dataclass(slots=True)
class _Loop:
    sent_at: float
    mix_nodes: tuple[bytes, ...]
    is_counted_lost: bool = False


@dataclass(frozen=True, slots=True)
class _SurbReply:
    surb: Surb
    message: bytes


@dataclass(slots=True)
class _Suspicion:
    lost_loops: int
    until: float


class MixnetClient:
    """Send to and receive from mix addresses through `gateway`."""

    def __init__(
        self,
        topology: Topology,
        gateway: MixNode,
        mailbox_key: X25519PrivateKey,
        mailbox_id: bytes,
        clock: Clock,
        random_bytes: RandomBytes,
        settings: ClientSettings,
    ) -> None:
        if gateway not in topology.gateways:
            raise ValueError("the client's gateway is not a gateway of the topology")
        self.topology = topology
        self.gateway = gateway
        self._mailbox_key = mailbox_key
        self.address = MixAddress(
            gateway.node_id, bytes(mailbox_id), mailbox_key.public_key().public_bytes_raw()
        )
        self._clock = clock
        self._random_bytes = random_bytes
        self.settings = settings
        self._outbox: deque[tuple[MixAddress, bytes] | _SurbReply] = deque()
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue(settings.inbox)
        self._surbs: dict[bytes, SurbSecrets] = {}  # by the SURB's payload key
        self._replies: asyncio.Queue[bytes] = asyncio.Queue(settings.inbox)
        self._loops: dict[bytes, _Loop] = {}
        self._suspicion: dict[bytes, _Suspicion] = {}
        self.sent_at: deque[float] = deque(maxlen=100_000)  # every packet sent (monotonic)
        self.loops_home = 0
        self.loops_lost = 0
        self._writer: asyncio.StreamWriter | None = None
        self.local_address: tuple[str, int] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = asyncio.Event()

    async def start(self) -> None:
        """Connect to the gateway, open the mailbox, start sending."""
        try:
            async with asyncio.timeout(self.settings.connect_timeout):
                reader, writer = await asyncio.open_connection(self.gateway.host, self.gateway.port)
            self._writer = writer
            self.local_address = writer.get_extra_info("sockname")[:2]
            await self._write(encode_frame(MailboxOpen(self.address.mailbox_id)))
        except (OSError, TimeoutError):
            raise NetworkError("The mixnet gateway could not be reached.") from None
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read(reader)),
            loop.create_task(self._send_stream()),
        ]
        if self.settings.loop_rate > 0:
            self._tasks.append(loop.create_task(self._loop_stream()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.settings.write_timeout)
        if self._writer is not None:
            self._writer.transport.abort()
        self._closed.set()

    def use_topology(self, topology: Topology) -> None:
        """A newer verified topology; suspects it dropped are forgotten."""
        if topology.serial < self.topology.serial or self.gateway not in topology.gateways:
            raise ValueError("an older topology, or one without this client's gateway")
        self.topology = topology
        self._suspicion = {n: s for n, s in self._suspicion.items() if topology.node(n)}

    def send(self, recipient: MixAddress, data: bytes) -> None:
        """Queue `data` (at most MAX_DATA_BYTES) for `recipient`; it leaves on a later tick."""
        if len(data) > MAX_DATA_BYTES:
            raise TooLarge(f"A mixnet message carries at most {MAX_DATA_BYTES} bytes.")
        if len(self._outbox) >= self.settings.outbox:
            raise TooLarge("Too many mixnet messages are waiting to be sent.")
        self._outbox.append((recipient, bytes(data)))

    def new_surb(self, replier_gateway_id: bytes) -> Surb:
        """A single-use reply block for a correspondent attached to `replier_gateway_id`:
        its route runs from that gateway through every layer to this client's gateway and
        mailbox (a gateway stores replies only for an opened mailbox, so the SURB id is the
        mailbox id; `receive_reply` tells this client's SURBs apart by their keys)."""
        entry = self.topology.node(replier_gateway_id)
        if entry is None or entry not in self.topology.gateways:
            raise ValueError("the replier's gateway is not in the topology")
        route = choose_route(
            self.topology,
            entry,
            self.gateway,
            self._random_bytes,
            self.settings.mean_delay_ms,
            self.suspects,
        )
        surb, secrets = create_surb(route, self.address.mailbox_id, self._random_bytes)
        while len(self._surbs) >= MAX_OPEN_SURBS:
            del self._surbs[next(iter(self._surbs))]
        self._surbs[surb.payload_key] = secrets
        return surb

    def forget_surb(self, surb: Surb) -> None:
        """Its reply is no longer wanted."""
        self._surbs.pop(surb.payload_key, None)

    def send_reply(self, surb: Surb, message: bytes) -> None:
        """Queue a MESSAGE_BYTES reply on `surb`, which must start at this client's gateway."""
        if len(message) != MESSAGE_BYTES or surb.first_address != self.gateway.node_id:
            raise ValueError("a reply is one Sphinx message on a SURB from this gateway")
        if len(self._outbox) >= self.settings.outbox:
            raise TooLarge("Too many mixnet messages are waiting to be sent.")
        self._outbox.append(_SurbReply(surb, bytes(message)))

    async def receive_reply(self) -> bytes:
        """The next reply (a MESSAGE_BYTES message) that came back on one of our SURBs."""
        return await self._replies.get()

    @property
    def queued(self) -> int:
        return len(self._outbox)

    async def receive(self) -> bytes:
        """The next data message delivered to this client's mailbox."""
        return await self._inbox.get()

    # Sending.

    async def _write(self, frame: bytes) -> None:
        assert self._writer is not None
        self._writer.write(frame)
        async with asyncio.timeout(self.settings.write_timeout):
            await self._writer.drain()

    @property
    def suspects(self) -> dict[bytes, int]:
        """Node id -> loops through it lost lately (reset when one comes back, late or not;
        forgotten after `suspect_for` seconds)."""
        now = self._clock.monotonic()
        self._suspicion = {n: s for n, s in self._suspicion.items() if s.until > now}
        return {n: s.lost_loops for n, s in self._suspicion.items()}

    def _gateway_of(self, address: MixAddress) -> MixNode | None:
        node = self.topology.node(address.gateway_id)
        return node if node in self.topology.gateways else None

    def _packet(
        self, exit_gateway: MixNode, final: bytes, message: bytes
    ) -> tuple[bytes, tuple[bytes, ...]]:
        route = choose_route(
            self.topology,
            self.gateway,
            exit_gateway,
            self._random_bytes,
            self.settings.mean_delay_ms,
            self.suspects,
        )
        packet = create_forward_packet(route, final, message, self._random_bytes)
        return packet, tuple(hop.address for hop in route[1:-1])

    def _next_packet(self) -> bytes:
        """The next queued message if it can go, else drop cover."""
        while self._outbox:
            item = self._outbox.popleft()
            if isinstance(item, _SurbReply):
                return create_reply_packet(item.surb, item.message)[1]
            recipient, data = item
            exit_gateway = self._gateway_of(recipient)
            if exit_gateway is None:
                continue  # the recipient's gateway left the topology
            message = seal_message(recipient, MessageKind.DATA, data, self._random_bytes)
            return self._packet(exit_gateway, recipient.mailbox_id, message)[0]
        gateways = self.topology.gateways
        exit_gateway = gateways[choose_index(self._random_bytes, len(gateways))]
        noise = draw(self._random_bytes, MESSAGE_BYTES)
        return self._packet(exit_gateway, draw(self._random_bytes, ADDRESS_BYTES), noise)[0]

    async def _emit(self, packet: bytes) -> None:
        try:
            await self._write(encode_frame(PacketFrame(packet)))
        except (OSError, TimeoutError):
            self._closed.set()
            raise
        self.sent_at.append(self._clock.monotonic())

    async def _poisson_ticks(self, rate: float) -> AsyncIterator[None]:
        """Ticks of a Poisson process of `rate` per second, scheduled on absolute times, so
        the time spent building packets (or a busy machine) does not lower the rate."""
        due = self._clock.monotonic()
        while True:
            due += exponential(self._random_bytes, 1.0 / rate)
            await asyncio.sleep(max(0.0, due - self._clock.monotonic()))
            yield

    async def _send_stream(self) -> None:
        async for _ in self._poisson_ticks(self.settings.send_rate):
            await self._emit(self._next_packet())

    async def _loop_stream(self) -> None:
        async for _ in self._poisson_ticks(self.settings.loop_rate):
            self._expire_loops()
            loop_id = draw(self._random_bytes, _LOOP_ID_BYTES)
            message = seal_message(self.address, MessageKind.LOOP, loop_id, self._random_bytes)
            packet, mix_nodes = self._packet(self.gateway, self.address.mailbox_id, message)
            self._loops[loop_id] = _Loop(self._clock.monotonic(), mix_nodes)
            await self._emit(packet)

    def _expire_loops(self) -> None:
        """Count loops not back within `loop_timeout` as lost (suspecting their nodes); keep
        them a while longer, as a late loop still shows its nodes are alive."""
        now = self._clock.monotonic()
        for loop_id, loop in list(self._loops.items()):
            age = now - loop.sent_at
            if age >= _LOOP_MEMORY * self.settings.loop_timeout:
                del self._loops[loop_id]
            elif age >= self.settings.loop_timeout and not loop.is_counted_lost:
                loop.is_counted_lost = True
                self.loops_lost += 1
                for node_id in loop.mix_nodes:
                    suspicion = self._suspicion.setdefault(node_id, _Suspicion(0, 0.0))
                    suspicion.lost_loops += 1
                    suspicion.until = now + self.settings.suspect_for

    # Receiving.

    def _exchange(self, peer_public: bytes) -> bytes:
        return self._mailbox_key.exchange(X25519PublicKey.from_public_bytes(peer_public))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while (data := await read_frame(reader, _READ_IDLE_SECONDS)) is not None:
            try:
                frame = decode_frame(data)
            except InvalidFrame:
                break
            if isinstance(frame, Mail) and frame.kind is MailKind.MESSAGE:
                self._mail(frame)
            elif isinstance(frame, Mail) and frame.kind is MailKind.REPLY:
                self._reply(frame.content)
        self._closed.set()

    def _mail(self, mail: Mail) -> None:
        try:
            kind, data = open_message(self._exchange, self.address, mail.content)
        except DecryptionFailed:
            return
        if kind is MessageKind.LOOP:
            loop = self._loops.pop(data, None)
            if loop is not None:
                self.loops_home += 1
                for node_id in loop.mix_nodes:
                    self._suspicion.pop(node_id, None)
        elif not self._inbox.full():
            self._inbox.put_nowait(data)

    def _reply(self, payload: bytes) -> None:
        """Open a reply with the SURB whose keys fit (each SURB opens only its own reply)."""
        for key, secrets in list(self._surbs.items()):
            try:
                message = open_reply(secrets, payload)
            except InvalidPacket:
                continue
            del self._surbs[key]
            if not self._replies.full():
                self._replies.put_nowait(message)
            return

    @property
    def is_connected(self) -> bool:
        return not self._closed.is_set()
