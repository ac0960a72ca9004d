"""server/corked_transport.py: the writes of one event-loop turn reach the socket's
transport as one write, after the turn; a close sends what is held first, an abort drops it."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from atopos.server.corked_transport import CorkedTransport


class _RecordingTransport:
    """Stands for the socket's transport: it records what it is asked to do."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.closing = False
        self.buffered = 7

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def write_eof(self) -> None:
        self.calls.append(("write_eof", None))

    def close(self) -> None:
        self.closing = True
        self.calls.append(("close", None))

    def abort(self) -> None:
        self.closing = True
        self.calls.append(("abort", None))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def _corked(loop: asyncio.AbstractEventLoop) -> tuple[CorkedTransport, _RecordingTransport]:
    raw = _RecordingTransport()
    return CorkedTransport(cast(asyncio.Transport, raw), loop), raw


def test_an_answers_head_and_body_leave_as_one_write_after_the_turn() -> None:
    async def scenario() -> None:
        corked, raw = _corked(asyncio.get_running_loop())
        corked.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n")
        corked.write(b"body")
        assert raw.calls == []  # held until the turn ends
        assert corked.get_write_buffer_size() == 7 + 42
        await asyncio.sleep(0)
        assert raw.calls == [("write", b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody")]
        corked.write(b"next")
        await asyncio.sleep(0)
        assert raw.calls[1:] == [("write", b"next")]

    asyncio.run(scenario())


def test_a_reused_buffer_does_not_change_what_is_sent() -> None:
    async def scenario() -> None:
        corked, raw = _corked(asyncio.get_running_loop())
        buffer = bytearray(b"first")
        corked.write(buffer)
        buffer[:] = b"later"
        corked.write(memoryview(b"!"))
        await asyncio.sleep(0)
        assert raw.calls == [("write", b"first!")]

    asyncio.run(scenario())


def test_close_and_end_of_file_send_what_is_held_first_and_abort_drops_it() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        corked, raw = _corked(loop)
        corked.write(b"answer")
        corked.close()
        assert raw.calls == [("write", b"answer"), ("close", None)]
        await asyncio.sleep(0)  # the scheduled flush finds nothing more to send
        assert raw.calls == [("write", b"answer"), ("close", None)]

        corked, raw = _corked(loop)
        corked.write(b"answer")
        corked.write_eof()
        assert raw.calls == [("write", b"answer"), ("write_eof", None)]

        corked, raw = _corked(loop)
        corked.write(b"answer")
        corked.abort()
        await asyncio.sleep(0)
        assert raw.calls == [("abort", None)]

    asyncio.run(scenario())


def test_nothing_is_written_once_the_connection_is_closing() -> None:
    async def scenario() -> None:
        corked, raw = _corked(asyncio.get_running_loop())
        corked.write(b"late")
        raw.closing = True  # the peer went away during the turn
        await asyncio.sleep(0)
        assert raw.calls == []
        corked.write(b"")
        await asyncio.sleep(0)
        assert raw.calls == []

    asyncio.run(scenario())


def test_everything_else_is_the_wrapped_transports() -> None:
    async def scenario() -> None:
        corked, _raw = _corked(asyncio.get_running_loop())
        assert corked.get_extra_info("peername") == "info:peername"
        assert corked.is_closing() is False

    asyncio.run(scenario())
