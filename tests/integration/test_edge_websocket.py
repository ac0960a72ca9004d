"""The edge middleware guards WebSocket connections as it guards HTTP requests: an error in a
handler never leaks and closes the socket with 1011, and the access log names the route
template, never the path or the peer. Real uvicorn on a loopback port, real `websockets`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator

import pytest
import uvicorn
from bench.harness import free_port
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from atopos.server.middleware import EdgeMiddleware
from atopos.server.runner import uvicorn_config
from tests.servers import ManualClock

SECRET_NAME = "room-name-that-must-not-be-logged"


async def _echo(websocket: WebSocket) -> None:
    await websocket.accept()
    text = await websocket.receive_text()
    await websocket.send_text(text)
    await websocket.close(code=4000)


async def _fails_after_accept(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.receive_text()
    raise RuntimeError("secret detail of " + websocket.path_params["name"])


async def _fails_before_accept(websocket: WebSocket) -> None:
    raise RuntimeError("secret detail of " + websocket.path_params["name"])


@contextlib.contextmanager
def _server() -> Iterator[str]:
    app = Starlette(
        routes=[
            WebSocketRoute("/echo/{name}", _echo),
            WebSocketRoute("/after/{name}", _fails_after_accept),
            WebSocketRoute("/before/{name}", _fails_before_accept),
        ]
    )
    port = free_port("127.0.0.1")
    server = uvicorn.Server(uvicorn_config(EdgeMiddleware(app, ManualClock(0)), "127.0.0.1", port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.01)
        yield f"ws://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    handler = _Records()
    loggers = [logging.getLogger("atopos.access"), logging.getLogger("atopos.server")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield handler.records
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


async def _talk(url: str) -> int | None:
    """Send one message; the close code the server ended with (None if it did not close)."""
    async with connect(url, open_timeout=5, close_timeout=5) as websocket:
        await websocket.send("hello")
        try:
            await asyncio.wait_for(websocket.recv(), 5)
            await asyncio.wait_for(websocket.recv(), 5)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
    return None


def _access_lines(records: list[logging.LogRecord]) -> list[tuple[str, str, int]]:
    return [
        (r.__dict__["method"], r.__dict__["route"], r.__dict__["status"])
        for r in records
        if r.name == "atopos.access"
    ]


def test_a_handler_error_after_accept_closes_with_1011_and_logs_the_template(
    records: list[logging.LogRecord],
) -> None:
    with _server() as base:
        assert asyncio.run(_talk(f"{base}/after/{SECRET_NAME}")) == 1011
        assert asyncio.run(_talk(f"{base}/echo/{SECRET_NAME}")) == 4000
    assert ("WEBSOCKET", "/after/{name}", 1011) in _access_lines(records)
    assert ("WEBSOCKET", "/echo/{name}", 4000) in _access_lines(records)
    assert all(SECRET_NAME not in r.getMessage() for r in records)
    assert all(SECRET_NAME not in str(r.__dict__.get("route")) for r in records)


def test_a_handler_error_before_accept_refuses_the_handshake(
    records: list[logging.LogRecord],
) -> None:
    with _server() as base, pytest.raises(InvalidStatus) as refused:
        asyncio.run(_talk(f"{base}/before/{SECRET_NAME}"))
    assert refused.value.response.status_code == 403
    assert SECRET_NAME.encode() not in refused.value.response.body
    assert ("WEBSOCKET", "/before/{name}", 403) in _access_lines(records)
