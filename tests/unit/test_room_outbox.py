"""A room connection's outbox (server/rooms/socket.py) behind a backed-up transport: frames
wait in a bounded backlog, an overflow drops the backlog and closes 4408 once the send in
flight is done, and a send past the timeout ends the connection. The WebSocket here is a
stand-in whose sends wait until the test lets them through (no transport to back up)."""

from __future__ import annotations

import asyncio

from atopos.protocol.room_relay import CLOSE_TIMEOUT
from atopos.server.rooms.socket import _Outbox


class _SlowSocket:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed: list[int] = []
        self.gate = asyncio.Event()

    async def send_text(self, text: str) -> None:
        await self.gate.wait()
        self.sent.append(text)

    async def close(self, code: int = 1000) -> None:
        self.closed.append(code)


async def _until_sent(socket: _SlowSocket, count: int) -> None:
    for _ in range(1000):  # the writer task needs a few turns of the loop per send
        if len(socket.sent) >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{count} frames were not sent")


def test_an_overflow_drops_the_backlog_and_closes_after_the_send_in_flight() -> None:
    async def scenario() -> None:
        socket = _SlowSocket()
        outbox = _Outbox(socket, None, size=2, max_bytes=1000, timeout=5)  # type: ignore[arg-type]
        outbox.put("a")
        await asyncio.sleep(0)  # the writer takes "a" and waits on the gate
        outbox.put("b")
        outbox.put("c")
        assert not outbox.is_closing
        outbox.put("d")  # backlog b, c full: overflow
        assert outbox.is_closing
        outbox.put("e")  # ignored once closing
        socket.gate.set()
        await asyncio.wait_for(outbox.finished, 1)
        assert socket.sent == ["a"]
        assert socket.closed == [CLOSE_TIMEOUT]

    asyncio.run(scenario())


def test_a_backlog_over_its_bytes_closes_as_an_overflow_does() -> None:
    # A few large frames overflow the byte cap long before the frame cap (section 13).
    async def scenario() -> None:
        socket = _SlowSocket()
        outbox = _Outbox(socket, None, size=1024, max_bytes=250, timeout=5)  # type: ignore[arg-type]
        outbox.put("a")
        await asyncio.sleep(0)  # the writer takes "a" and waits on the gate
        outbox.put("b" * 100)
        outbox.put("c" * 100)
        assert not outbox.is_closing
        outbox.put("d" * 100)  # 300 bytes queued: over
        assert outbox.is_closing
        socket.gate.set()
        await asyncio.wait_for(outbox.finished, 1)
        assert socket.sent == ["a"]
        assert socket.closed == [CLOSE_TIMEOUT]

    asyncio.run(scenario())


def test_sent_frames_leave_the_byte_count() -> None:
    async def scenario() -> None:
        socket = _SlowSocket()
        socket.gate.set()
        outbox = _Outbox(socket, None, size=1024, max_bytes=250, timeout=5)  # type: ignore[arg-type]
        for n in range(10):  # 1000 bytes in all, never more than 250 waiting
            outbox.put(str(n) * 100)
            await _until_sent(socket, n + 1)
        assert not outbox.is_closing
        outbox.close(1000)
        await asyncio.wait_for(outbox.finished, 1)
        assert socket.sent == [str(n) * 100 for n in range(10)]
        assert socket.closed == [1000]

    asyncio.run(scenario())


def test_queued_frames_go_out_in_order_then_the_close() -> None:
    async def scenario() -> None:
        socket = _SlowSocket()
        outbox = _Outbox(socket, None, size=8, max_bytes=1000, timeout=5)  # type: ignore[arg-type]
        for text in ("a", "b", "c"):
            outbox.put(text)
        outbox.close(4400)
        socket.gate.set()
        await asyncio.wait_for(outbox.finished, 1)
        assert socket.sent == ["a", "b", "c"]
        assert socket.closed == [4400]

    asyncio.run(scenario())


def test_a_send_past_the_timeout_ends_the_connection() -> None:
    async def scenario() -> None:
        socket = _SlowSocket()
        outbox = _Outbox(socket, None, size=8, max_bytes=1000, timeout=0.05)  # type: ignore[arg-type]
        outbox.put("a")
        await asyncio.wait_for(outbox.finished, 1)
        assert outbox.is_closing
        assert socket.sent == []

    asyncio.run(scenario())


def test_a_connection_that_keeps_up_is_written_at_once_without_a_task() -> None:
    async def scenario() -> None:
        socket = _SlowSocket()
        written: list[bytes] = []

        def send_now(data: bytes) -> bool:
            written.append(data)
            return True

        outbox = _Outbox(socket, send_now, size=8, max_bytes=1000, timeout=5)  # type: ignore[arg-type]
        outbox.put("é")
        assert written == ["é".encode()]
        assert len(asyncio.all_tasks()) == 1  # only this scenario: no writer was started
        outbox.reader_ended()
        await asyncio.wait_for(outbox.finished, 1)

    asyncio.run(scenario())
