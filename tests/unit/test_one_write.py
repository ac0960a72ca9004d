"""An answer's head waits for its body and leaves with it in one write; alone, it leaves at
the end of the event loop's step or before a close. The uvicorn internals this relies on
are pinned: a new uvicorn must be checked against server/one_write.py first."""

from __future__ import annotations

import asyncio
import importlib.metadata
import threading
from typing import Any

import httpx
import uvicorn
from bench.harness import free_port
from tests.servers import wait_healthy

from atopos.server.one_write import HeadHeldTransport
from atopos.server.runner import uvicorn_config


class _Recorded:
    """A transport that notes each write as one item."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.is_closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.is_closed

    def close(self) -> None:
        self.is_closed = True


def _held(recorded: _Recorded, loop: asyncio.AbstractEventLoop) -> HeadHeldTransport:
    return HeadHeldTransport(recorded, loop)  # type: ignore[arg-type]


def test_head_and_body_in_one_step_are_one_write() -> None:
    async def scenario() -> list[bytes]:
        recorded = _Recorded()
        transport = _held(recorded, asyncio.get_running_loop())
        transport.write(b"HEAD")
        assert recorded.writes == []
        transport.write(b"body")
        transport.write(b"more")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return recorded.writes

    assert asyncio.run(scenario()) == [b"HEADbody", b"more"]


def test_a_head_alone_leaves_at_the_end_of_the_step_and_before_a_close() -> None:
    async def scenario() -> tuple[list[bytes], list[bytes], bool]:
        loop = asyncio.get_running_loop()
        alone = _Recorded()
        _held(alone, loop).write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await asyncio.sleep(0)
        closed = _Recorded()
        transport = _held(closed, loop)
        transport.write(b"HEAD")
        transport.close()
        written_before_close = list(closed.writes)
        return alone.writes, written_before_close, closed.is_closed

    alone, before_close, is_closed = asyncio.run(scenario())
    assert alone == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    assert before_close == [b"HEAD"]
    assert is_closed


def test_a_large_body_is_not_copied_and_a_closing_transport_gets_nothing() -> None:
    async def scenario() -> tuple[list[bytes], list[bytes]]:
        loop = asyncio.get_running_loop()
        large = _Recorded()
        transport = _held(large, loop)
        transport.write(b"HEAD")
        transport.write(bytes(100_000))
        gone = _Recorded()
        _held(gone, loop).write(b"HEAD")
        gone.is_closed = True  # the client left (or the guard aborted) within the step
        await asyncio.sleep(0)
        return large.writes, gone.writes

    large, gone = asyncio.run(scenario())
    assert large == [b"HEAD", bytes(100_000)]
    assert gone == []


def test_uvicorn_is_the_version_whose_cycle_this_relies_on() -> None:
    assert importlib.metadata.version("uvicorn") == "0.54.0"


def test_each_request_cycle_of_the_node_writes_through_the_held_transport() -> None:
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            while message["type"] != "lifespan.shutdown":
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                message = await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        # uvicorn hands the app its cycle's bound `send`: the cycle's transport is ours.
        seen.append(type(send.__self__.transport).__name__)
        body = b"hello"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})

    port = free_port()
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_healthy(f"http://127.0.0.1:{port}")
        with httpx.Client(timeout=10) as client:
            answers = [client.get(f"http://127.0.0.1:{port}/x").content for _ in range(3)]
    finally:
        server.should_exit = True
        thread.join(timeout=15)
    assert answers == [b"hello"] * 3
    assert set(seen) == {"HeadHeldTransport"}
