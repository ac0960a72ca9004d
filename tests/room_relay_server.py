"""The real room relay for tests: an in-process uvicorn on 127.0.0.1 with the rooms product
reachable (its RAM state), and asyncio `websockets` peers that run `RoomMember` over it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import msgspec
import uvicorn
from bench.harness import free_port
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from atopos.clock import Clock
from atopos.crypto import pow as proof_of_work
from atopos.protocol.room_creation import NewRoom, make_room
from atopos.protocol.room_errors import RoomProtocolError
from atopos.protocol.room_events import MemberEvent, MessageReceived
from atopos.protocol.room_link import RoomLink
from atopos.protocol.room_member import RoomMember
from atopos.server.app import create_app
from atopos.server.config import ServerConfig, rate_limits
from atopos.server.rooms.limits import RoomNodeLimits
from atopos.server.rooms.mount import RoomsProduct
from atopos.server.runner import uvicorn_config
from tests.rooms_support import SeededRandom


@dataclasses.dataclass
class RelayServer:
    url: str
    rooms: RoomsProduct
    clock: Clock

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1)

    def create_room(self, label: str = "room", **options: object) -> NewRoom:
        """make_room + the proof of work + POST, as a client does."""
        new = make_room(self.url, SeededRandom(f"{label}/create"), name="Plans", **options)  # type: ignore[arg-type]
        answer = self.post_creation(new)
        assert answer.status_code == 201, answer.text
        return new

    def post_creation(self, new: NewRoom, **overrides: object) -> httpx.Response:
        room_id = new.creation.room_id
        challenge = httpx.post(f"{self.url}/api/v1/rooms/{room_id}/challenge").json()
        nonce = proof_of_work.solve(challenge["challenge"].encode(), challenge["bits"])
        body = msgspec.to_builtins(new.creation) | {
            "challenge": challenge["challenge"],
            "nonce": nonce,
        }
        return httpx.post(f"{self.url}/api/v1/rooms", json=body | overrides)


@contextlib.contextmanager
def relay_server(
    tmp_path: Path,
    clock: Clock,
    limits: RoomNodeLimits | None = None,
    pow_bits: int = 0,
) -> Iterator[RelayServer]:
    config = ServerConfig(
        data_dir=tmp_path / "data", pow_bits=pow_bits, log_level="debug", **rate_limits(0)
    )
    held: list[RoomsProduct] = []
    app = create_app(config, clock=clock, room_limits=limits, on_rooms=held.append)
    port = free_port("127.0.0.1")
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.01)
        yield RelayServer(f"http://127.0.0.1:{port}", held[0], clock)
    finally:
        server.should_exit = True
        thread.join(15)


@dataclasses.dataclass
class Peer:
    """One member over one real WebSocket: every frame in goes to the member, every frame
    the member queues goes out."""

    member: RoomMember
    socket: ClientConnection
    received: list[str] = dataclasses.field(default_factory=list)
    sent: list[str] = dataclasses.field(default_factory=list)
    events: list[MemberEvent] = dataclasses.field(default_factory=list)
    errors: list[RoomProtocolError] = dataclasses.field(default_factory=list)
    close_code: int | None = None
    task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        try:
            async for text in self.socket:
                assert isinstance(text, str)
                self.received.append(text)
                try:
                    self.events += self.member.receive(text, time.time())
                except RoomProtocolError as error:
                    self.errors.append(error)
                await self.flush()
        except ConnectionClosed:
            pass
        await self.socket.wait_closed()
        self.close_code = self.socket.close_code

    async def flush(self) -> None:
        for text in self.member.outgoing():
            self.sent.append(text)
            with contextlib.suppress(ConnectionClosed):
                await self.socket.send(text)

    async def say(self, text: str) -> None:
        self.member.send_text(text)
        await self.flush()

    def texts(self) -> list[tuple[int, str]]:
        return [(e.sender, e.text) for e in self.events if isinstance(e, MessageReceived)]

    async def closed(self, within: float = 10) -> int | None:
        assert self.task is not None
        await asyncio.wait_for(asyncio.shield(self.task), within)
        return self.close_code


async def join(server: RelayServer, link: RoomLink, name: str, room_id: str | None = None) -> Peer:
    rid = room_id or link.room_path.rsplit("/", 1)[1]
    socket = await connect(
        f"{server.ws_url}/api/v1/rooms/{rid}", open_timeout=5, close_timeout=2, max_size=None
    )
    peer = Peer(RoomMember(link, name, SeededRandom(f"member/{name}/{id(socket)}")), socket)
    peer.task = asyncio.create_task(peer.run())
    return peer


async def until(
    condition: Callable[[], bool], within: float = 10, explain: Callable[[], str] | None = None
) -> None:
    """Until `condition` holds; after `within` seconds an AssertionError, with what
    `explain` says of the state then (for a failure seen only under CI's load)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            said = f"\n{explain()}" if explain is not None else ""
            raise AssertionError(f"condition not reached in {within} s{said}")
        await asyncio.sleep(0.01)
