"""A test mixnet: keys and a signed topology of 3 layers x 2 nodes plus 2 gateways."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from atopos.clock import SystemClock
from atopos.mixnet.client import MixnetClient
from atopos.mixnet.node import MixNodeService
from atopos.mixnet.settings import ClientSettings, NodeSettings
from atopos.protocol.mix_link import FRAME_BYTES
from atopos.protocol.mix_topology import MixExit, MixNode, Topology, sign_topology
from atopos.randomness import system_random_bytes

T = TypeVar("T")

AUTHORITY = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
VALID_FROM = 1_700_000_000
VALID_UNTIL = 4_000_000_000
KEY_EPOCH = 1
# The exit service's own key and mailbox (at the last gateway): not any node's Sphinx key.
EXIT_KEY = X25519PrivateKey.from_private_bytes(b"\x55" * 32)
EXIT_MAILBOX = b"\xee" * 32


@dataclass(frozen=True)
class TestNet:
    topology: Topology
    keys: dict[bytes, X25519PrivateKey]  # node id -> private key
    document: bytes


def make_testnet(
    ports: list[int], layers: int = 3, per_layer: int = 2, gateways: int = 2
) -> TestNet:
    """A topology on 127.0.0.1 with `ports` in order (layers first, then gateways)."""
    count = layers * per_layer + gateways
    assert len(ports) == count
    keys: dict[bytes, X25519PrivateKey] = {}
    nodes = []
    for index, port in enumerate(ports):
        key = X25519PrivateKey.from_private_bytes(bytes([index + 1]) * 31 + b"\x40")
        node_id = bytes([0xA0 + index]) * 32
        keys[node_id] = key
        nodes.append(
            MixNode(node_id, "127.0.0.1", port, key.public_key().public_bytes_raw(), KEY_EPOCH)
        )
    topology = Topology(
        serial=1,
        valid_from=VALID_FROM,
        valid_until=VALID_UNTIL,
        layers=tuple(
            tuple(nodes[layer * per_layer : (layer + 1) * per_layer]) for layer in range(layers)
        ),
        gateways=tuple(nodes[layers * per_layer :]),
        exits=(MixExit(nodes[-1].node_id, EXIT_MAILBOX, EXIT_KEY.public_key().public_bytes_raw()),),
    )
    return TestNet(topology, keys, sign_topology(topology, AUTHORITY))


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class Tap:
    """A TCP relay in front of one node: the topology names the tap's port, the node listens
    on another. It records, per connection and direction, every byte count and the kind byte
    of every whole frame with its arrival time, as a wire observer would see them; it can
    also flip one bit of the next frame going into the node (a tampering link)."""

    def __init__(self, name: str, listen_port: int, node_port: int) -> None:
        self.name = name
        self.listen_port = listen_port
        self.node_port = node_port
        self.streams: list[Stream] = []
        self.tamper_at: int | None = None  # byte offset in the next inbound frame
        self.peer_of_local: dict[tuple[str, int], tuple[str, int]] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, listen_socket: socket.socket | None = None) -> None:
        if listen_socket is not None:
            self._server = await asyncio.start_server(self._accept, sock=listen_socket)
        else:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.listen_port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = writer.get_extra_info("peername")[:2]
        try:
            node_reader, node_writer = await asyncio.open_connection("127.0.0.1", self.node_port)
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        self.peer_of_local[node_writer.get_extra_info("sockname")[:2]] = peer
        inbound = Stream(self.name, "in", peer)
        outbound = Stream(self.name, "out", peer)
        self.streams += [inbound, outbound]
        try:
            await asyncio.gather(
                self._pump(reader, node_writer, inbound, tamper=True),
                self._pump(node_reader, writer, outbound, tamper=False),
            )
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            node_writer.close()
            self._tasks.discard(task)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        stream: Stream,
        tamper: bool,
    ) -> None:
        while chunk := await reader.read(65536):
            stream.add(chunk)
            if tamper and self.tamper_at is not None and stream.partial_start is not None:
                offset = stream.partial_start + self.tamper_at
                if offset < len(chunk):
                    chunk = chunk[:offset] + bytes([chunk[offset] ^ 1]) + chunk[offset + 1 :]
                    self.tamper_at = None
                    stream.tampered += 1
            writer.write(chunk)
            await writer.drain()
        writer.close()


class Stream:
    """One direction of one tapped connection."""

    def __init__(self, node: str, direction: str, peer: tuple[str, int]) -> None:
        self.node, self.direction, self.peer = node, direction, peer
        self.byte_count = 0
        self.kinds: list[int] = []
        self.frame_times: list[float] = []
        self.tampered = 0
        self.partial_start: int | None = None  # where, in the last chunk, a frame started

    def add(self, chunk: bytes) -> None:
        """Count the chunk; note each frame that starts in it (frames are FRAME_BYTES)."""
        start = self.byte_count
        self.byte_count += len(chunk)
        first = -start % FRAME_BYTES
        self.partial_start = first if first < len(chunk) else None
        for offset in range(first, len(chunk), FRAME_BYTES):
            self.kinds.append(chunk[offset])
        whole_before = start // FRAME_BYTES
        for _ in range(whole_before, self.byte_count // FRAME_BYTES):
            self.frame_times.append(time.monotonic())


FAST_NODES = NodeSettings(
    mean_delay_ms=5.0, loop_rate=1.0, drop_rate=1.0, retry_delay=0.1, record_observations=True
)


class Lab:
    """The test mixnet: 3 layers x 2 nodes and 2 gateways, each behind a tap, in one event
    loop on a thread of its own; tests hand it coroutines with `run`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        # Bound now, before any node sends: a port picked and bound later could meanwhile
        # become some connection's ephemeral port.
        self._sockets = [_bound_socket() for _ in range(16)]
        tap_ports = [s.getsockname()[1] for s in self._sockets[:8]]
        self.node_ports = [s.getsockname()[1] for s in self._sockets[8:]]
        self.net = make_testnet(tap_ports)
        nodes = list(self.net.topology.nodes())
        self.names = [f"L{i // 2 + 1}{'ab'[i % 2]}" for i in range(6)] + ["GA", "GB"]
        self.taps = {
            node.node_id: Tap(name, node.port, port)
            for node, name, port in zip(nodes, self.names, self.node_ports, strict=True)
        }
        self.services: dict[bytes, MixNodeService] = {}
        self.run(self._start_all())

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            for task in asyncio.all_tasks(self.loop):
                if "scenario" in repr(task) or "MixnetClient" in repr(task):
                    task.print_stack()
            future.cancel()
            raise

    def name(self, node_id: bytes) -> str:
        return self.taps[node_id].name

    def node(self, name: str) -> MixNode:
        return next(n for n in self.net.topology.nodes() if self.name(n.node_id) == name)

    async def start_node(
        self, node: MixNode, sockets: tuple[socket.socket, socket.socket] | None = None
    ) -> None:
        tap = self.taps[node.node_id]
        service = MixNodeService(
            node,
            {KEY_EPOCH: self.net.keys[node.node_id]},
            self.net.topology,
            SystemClock(),
            system_random_bytes,
            FAST_NODES,
            listen_port=tap.node_port,
        )
        await service.start(sockets[1] if sockets else None)
        await tap.start(sockets[0] if sockets else None)
        self.services[node.node_id] = service

    async def stop_node(self, node: MixNode) -> None:
        await self.services.pop(node.node_id).close()
        await self.taps[node.node_id].close()

    async def _start_all(self) -> None:
        for index, node in enumerate(self.net.topology.nodes()):
            await self.start_node(node, (self._sockets[index], self._sockets[8 + index]))

    async def new_client(self, gateway: str, settings: ClientSettings) -> MixnetClient:
        client = MixnetClient(
            self.net.topology,
            self.node(gateway),
            X25519PrivateKey.generate(),
            system_random_bytes(32),
            SystemClock(),
            system_random_bytes,
            settings,
        )
        await client.start()
        return client

    def origin(self, node: MixNode, predecessor: str) -> str:
        """The node (or "client") behind the address `node` saw a packet come from."""
        host, port = predecessor.rsplit(":", 1)
        peer = self.taps[node.node_id].peer_of_local.get((host, int(port)))
        if peer is None:
            return "?"
        for node_id, service in self.services.items():
            if any(link.local_address == peer for link in service.links()):
                return self.name(node_id)
        return "client"

    def close(self) -> None:
        async def stop() -> None:
            for node_id in list(self.services):
                await self.stop_node(self.net.topology.node(node_id))  # type: ignore[arg-type]

        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
