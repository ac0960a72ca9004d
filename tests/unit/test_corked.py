"""The corked transport: a response's writes of one event-loop turn leave as one write,
in order, and nothing is held beyond the turn."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from atopos.server.corked import CorkedTransport


class RecordingTransport(asyncio.Transport):
    """The real transport's side of the proxy: what reached it, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.events: list[str] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closing, "write after close"
        self.writes.append(bytes(data))
        self.events.append("write")

    def write_eof(self) -> None:
        self.events.append("eof")

    def close(self) -> None:
        self.closing = True
        self.events.append("close")

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 4242)}.get(name, default)


async def next_turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def run(scenario: Coroutine[Any, Any, None]) -> None:
    asyncio.run(scenario)


def test_headers_and_body_of_one_turn_leave_as_one_write() -> None:
    async def scenario() -> None:
        real = RecordingTransport()
        corked = CorkedTransport(real, asyncio.get_running_loop())
        corked.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        assert real.writes == []  # held until the body comes
        corked.write(b"{}")
        assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
        await next_turn()
        assert len(real.writes) == 1  # the scheduled flush found nothing left

    run(scenario())


def test_a_lone_write_leaves_at_the_end_of_the_turn() -> None:
    async def scenario() -> None:
        real = RecordingTransport()
        corked = CorkedTransport(real, asyncio.get_running_loop())
        corked.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        assert real.writes == []
        await next_turn()
        assert real.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"]

    run(scenario())


def test_large_writes_go_straight_through_after_what_was_held() -> None:
    async def scenario() -> None:
        real = RecordingTransport()
        corked = CorkedTransport(real, asyncio.get_running_loop())
        big = bytes(range(256)) * 256  # 64 KiB
        corked.write(b"headers")
        corked.write(big)
        corked.write(big)
        assert real.writes == [b"headers", big, big]
        corked.write(b"small")  # a new turn's first write is held again
        await next_turn()
        assert real.writes == [b"headers", big, big, b"small"]

    run(scenario())


def test_close_and_eof_send_what_was_held_first() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        real = RecordingTransport()
        corked = CorkedTransport(real, loop)
        corked.write(b"last words")
        corked.write_eof()
        corked.write(b"more")
        corked.close()
        assert real.events == ["write", "eof", "write", "close"]
        assert real.writes == [b"last words", b"more"]
        await next_turn()
        assert real.events == ["write", "eof", "write", "close"]

    run(scenario())


def test_a_write_held_when_the_connection_is_lost_is_dropped() -> None:
    async def scenario() -> None:
        real = RecordingTransport()
        corked = CorkedTransport(real, asyncio.get_running_loop())
        corked.write(b"response")
        real.close()  # the peer went away before the turn ended
        await next_turn()
        assert real.writes == []

    run(scenario())


def test_everything_else_reaches_the_real_transport() -> None:
    async def scenario() -> None:
        corked = CorkedTransport(RecordingTransport(), asyncio.get_running_loop())
        assert corked.get_extra_info("peername") == ("127.0.0.1", 4242)
        assert corked.is_closing() is False

    run(scenario())
