"""A node's inbound links: a stalled half frame is cut by the idle timeout, a bad frame or
a mailbox request to a mix node closes the link, and the connection cap holds."""

from __future__ import annotations

import asyncio
import socket

from atopos.clock import SystemClock
from atopos.mixnet.node import MixNodeService
from atopos.mixnet.settings import NodeSettings
from atopos.protocol.mix_link import FRAME_BYTES, MailboxOpen, encode_frame
from atopos.randomness import system_random_bytes
from tests.mixnet_support import KEY_EPOCH, make_testnet


def _bound() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


async def _closed_within(port: int, data: bytes, seconds: float) -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        async with asyncio.timeout(seconds):
            return await reader.read() == b""
    except TimeoutError:
        return False
    finally:
        writer.close()


def test_inbound_links_are_bounded_in_time_and_shape() -> None:
    sockets = [_bound() for _ in range(8)]
    net = make_testnet([s.getsockname()[1] for s in sockets])
    mix = net.topology.layers[0][0]
    settings = NodeSettings(loop_rate=0, drop_rate=0, idle_timeout=0.5, max_connections=2)

    async def scenario() -> tuple[bool, bool, bool, bool, bool]:
        service = MixNodeService(
            mix,
            {KEY_EPOCH: net.keys[mix.node_id]},
            net.topology,
            SystemClock(),
            system_random_bytes,
            settings,
        )
        await service.start(sockets[0])
        port = mix.port
        try:
            stalled = await _closed_within(port, bytes(100), 3.0)
            bad_kind = await _closed_within(port, b"\x09" + bytes(FRAME_BYTES - 1), 0.3)
            mailbox = await _closed_within(port, encode_frame(MailboxOpen(b"M" * 32)), 0.3)
            idle_kept = not await _closed_within(port, b"", 0.2)
            held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
            await asyncio.sleep(0.05)
            over_cap = await _closed_within(port, b"", 0.3)
            for _, writer in held:
                writer.close()
            return stalled, bad_kind, mailbox, idle_kept, over_cap
        finally:
            await service.close()

    assert asyncio.run(scenario()) == (True, True, True, True, True)
    for sock in sockets:
        sock.close()
