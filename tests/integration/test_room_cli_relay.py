"""The relay double (tests/rooms_relay_double.py) on a real loopback WebSocket, with the
room creation route, so CLI clients can be tested before the real relay is merged.

Routes as docs/cli.md ("Rooms") says the client uses them: `POST /api/v1/rooms/{id}/challenge`,
`POST /api/v1/rooms` (creation body + challenge + nonce, pow bits 0), `WS /api/v1/rooms/{id}`.
An unknown or ended room gets `error ended` and close code 4404. No limits: not a relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import msgspec
import uvicorn
from bench.harness import free_port
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from atopos.protocol.room_creation import RoomCreation
from atopos.protocol.room_errors import RoomProtocolError
from atopos.protocol.room_wire import Error, encode_frame
from atopos.randomness import system_random_bytes
from tests.rooms_relay_double import Connection, RelayDouble


class _NoMember:
    """The double drives members in memory; here the member is across a socket."""

    def outgoing(self) -> list[str]:
        return []


@dataclass
class _Wire:
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    is_finished: bool = False


class NetworkRelay(RelayDouble):
    """The double, delivering to sockets instead of in-memory members."""

    def __init__(self, creation: RoomCreation, rooms: dict[str, NetworkRelay]) -> None:
        super().__init__(creation, system_random_bytes)
        self.wires: dict[int, _Wire] = {}
        self.rooms = rooms

    def deliver(self, connection: Connection, text: str) -> None:
        wire = self.wires.get(id(connection))
        if wire is not None and not wire.is_finished:
            wire.queue.put_nowait(text)

    def settle(self) -> None:
        """Close the sockets of connections the double closed; forget an ended room."""
        for connection in self.connections:
            wire = self.wires.get(id(connection))
            if connection.is_closed and wire is not None and not wire.is_finished:
                wire.is_finished = True
                wire.queue.put_nowait(None)
        if self.is_ended:
            self.rooms.pop(self.creation.room_id, None)


def relay_app() -> tuple[Starlette, dict[str, NetworkRelay]]:
    rooms: dict[str, NetworkRelay] = {}

    async def healthz(request: Request) -> Response:
        return Response("ok")

    async def challenge(request: Request) -> Response:
        room_id = request.path_params["room_id"]
        return JSONResponse({"challenge": f"room:{room_id}", "bits": 0, "expires_at": 0})

    async def create(request: Request) -> Response:
        body = await request.json()
        if body.pop("challenge", None) != f"room:{body.get('room_id')}" or "nonce" not in body:
            return JSONResponse({"detail": "proof of work missing"}, status_code=403)
        body.pop("nonce")
        try:
            creation = msgspec.convert(body, RoomCreation)
        except msgspec.ValidationError as error:
            return JSONResponse({"detail": str(error)}, status_code=422)
        if creation.room_id in rooms:
            return JSONResponse({"detail": "taken"}, status_code=409)
        rooms[creation.room_id] = NetworkRelay(creation, rooms)
        return JSONResponse({"expires_at": 2_000_000_000}, status_code=201)

    async def room_socket(websocket: WebSocket) -> None:
        await websocket.accept()
        relay = rooms.get(websocket.path_params["room_id"])
        if relay is None:
            await websocket.send_text(encode_frame(Error(code="ended", message="no such room")))
            await websocket.close(4404)
            return
        wire = _Wire()
        connection = Connection(member=_NoMember(), challenge=b"")  # type: ignore[arg-type]
        relay.wires[id(connection)] = wire
        # RelayDouble.connect, with the wire registered before the challenge goes out
        connection.challenge = relay.random_bytes(32)
        relay.connections.append(connection)
        from atopos.protocol.room_wire import Challenge, b64

        relay.send(connection, Challenge(v=1, nonce=b64(connection.challenge)))

        async def write() -> None:
            while (text := await wire.queue.get()) is not None:
                await websocket.send_text(text)
            await websocket.close(1000)

        writer = asyncio.create_task(write())
        try:
            while not wire.is_finished:
                text = await websocket.receive_text()
                try:
                    relay.handle(connection, text)
                except RoomProtocolError as error:
                    relay.close(connection, error.code)
                relay.settle()
        except WebSocketDisconnect:
            if not connection.is_closed:
                relay.on_leave(connection, None)
                relay.settle()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, 5)

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/api/v1/rooms/{room_id}/challenge", challenge, methods=["POST"]),
            Route("/api/v1/rooms", create, methods=["POST"]),
            WebSocketRoute("/api/v1/rooms/{room_id}", room_socket),
        ]
    )
    return app, rooms


@contextlib.contextmanager
def running_relay() -> Iterator[tuple[str, dict[str, NetworkRelay]]]:
    """The network relay double on a loopback port: (base URL, its rooms)."""
    app, rooms = relay_app()
    port = free_port("127.0.0.1")
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(500):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            threading.Event().wait(0.02)  # polling interval, not a wait for readiness
        yield url, rooms
    finally:
        server.should_exit = True
        thread.join(timeout=15)
