"""RoomSession (client/rooms.py) over an in-memory socket to the relay double: events in
order, self-updates when the member asks for them, refused frames become notices, and the
outcome (exit code) of a lost connection, an ended room and a refusal."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from tests.integration.test_room_cli_relay import NetworkRelay, _NoMember, _Wire
from tests.rooms_relay_double import Connection
from websockets.exceptions import ConnectionClosed

from atopos.client.rooms import (
    ConnectionLost,
    ProtocolNotice,
    RoomEvent,
    RoomOutcome,
    RoomSession,
    websocket_path,
)
from atopos.clock import SystemClock
from atopos.errors import Gone, NetworkError, Refused
from atopos.protocol.room_creation import make_room
from atopos.protocol.room_events import EpochStarted, MessageReceived
from atopos.protocol.room_link import RoomLink
from atopos.protocol.room_member import RoomMember
from atopos.protocol.room_wire import Challenge, b64
from atopos.randomness import system_random_bytes


class MemorySocket:
    """One member's connection to the relay double, in memory."""

    def __init__(self, relay: NetworkRelay) -> None:
        self.relay = relay
        self.wire = _Wire()
        self.connection = Connection(member=_NoMember(), challenge=relay.random_bytes(32))  # type: ignore[arg-type]
        relay.wires[id(self.connection)] = self.wire
        relay.connections.append(self.connection)
        relay.send(self.connection, Challenge(v=1, nonce=b64(self.connection.challenge)))
        self.is_cut = False

    async def send(self, message: str) -> None:
        if self.is_cut or self.wire.is_finished:
            raise ConnectionClosed(None, None)
        self.relay.handle(self.connection, message)
        self.relay.settle()

    async def recv(self) -> str:
        text = await self.wire.queue.get()
        if text is None or self.is_cut:
            raise ConnectionClosed(None, None)
        return text

    async def close(self) -> None:
        if not self.connection.is_closed:
            self.relay.on_leave(self.connection, None)
            self.relay.settle()

    def cut(self) -> None:
        """The network fails: the next read raises ConnectionClosed."""
        self.is_cut = True
        self.wire.queue.put_nowait(None)


class Room:
    def __init__(self, **options: object) -> None:
        self.new = make_room("https://rooms.example", system_random_bytes, **options)  # type: ignore[arg-type]
        self.relay = NetworkRelay(self.new.creation, {})
        self.sessions: dict[str, RoomSession] = {}
        self.sockets: dict[str, MemorySocket] = {}
        self.events: dict[str, list[RoomEvent]] = {}

    def join(self, name: str, link: RoomLink, **member_options: float) -> RoomSession:
        socket = MemorySocket(self.relay)
        member = RoomMember(link, name, system_random_bytes, **member_options)  # type: ignore[arg-type]
        session = RoomSession(member, socket, SystemClock())
        session.start()
        self.sessions[name], self.sockets[name], self.events[name] = session, socket, []

        async def collect() -> None:
            async for event in session.events():
                self.events[name].append(event)

        asyncio.get_running_loop().create_task(collect())
        return session

    async def until(self, done: Callable[[], bool]) -> None:
        for _ in range(2000):
            if done():
                return
            await asyncio.sleep(0.005)  # polling the in-memory room
        raise AssertionError(self.events)

    def epochs(self, name: str) -> list[EpochStarted]:
        return [e for e in self.events[name] if isinstance(e, EpochStarted)]


def test_the_websocket_path_is_the_relays() -> None:
    new = make_room("https://h.example/base", system_random_bytes)
    room_id = new.member_link.text().split("/r/")[1].split("#")[0]
    assert websocket_path(new.member_link) == f"/api/v1/rooms/{room_id}"


def test_messages_flow_and_a_member_re_keys_when_it_should() -> None:
    async def scenario() -> None:
        room = Room()
        ann = room.join("ann", room.new.creator_link, update_after_messages=2)
        await room.until(lambda: ann.member.epoch == 1)
        room.join("bob", room.new.member_link)
        await room.until(lambda: len(room.epochs("bob")) == 1 and ann.member.epoch == 2)
        await ann.send_text("one")
        await ann.send_text("two")
        await room.until(lambda: any(e.reason == "update" for e in room.epochs("bob")))
        update = next(e for e in room.epochs("bob") if e.reason == "update")
        assert update.is_safety_code_changed is False
        await ann.send_text("three, after the update")
        await room.until(
            lambda: (
                [e.text for e in room.events["bob"] if isinstance(e, MessageReceived)]
                == ["one", "two", "three, after the update"]
            )
        )
        assert ann.member.epoch == update.epoch

    asyncio.run(scenario())


def test_a_refused_frame_is_a_notice_and_the_session_goes_on() -> None:
    async def scenario() -> None:
        room = Room()
        ann = room.join("ann", room.new.creator_link)
        await room.until(lambda: ann.member.epoch == 1)
        room.sockets["ann"].wire.queue.put_nowait('{"t":"msg","seq":99}')
        await room.until(lambda: any(isinstance(e, ProtocolNotice) for e in room.events["ann"]))
        assert not ann.is_over
        bob = room.join("bob", room.new.member_link)
        await room.until(lambda: bob.member.epoch == 2 and ann.member.epoch == 2)

    asyncio.run(scenario())


def test_a_lost_connection_ends_the_session_as_a_leave() -> None:
    async def scenario() -> None:
        room = Room()
        ann = room.join("ann", room.new.creator_link)
        await room.until(lambda: ann.member.epoch == 1)
        bob = room.join("bob", room.new.member_link)
        await room.until(lambda: bob.member.epoch == 2)
        room.sockets["bob"].cut()
        await room.until(lambda: bob.is_over)
        assert bob.outcome is RoomOutcome.NETWORK
        assert isinstance(bob.failure, NetworkError)
        assert isinstance(room.events["bob"][-1], ConnectionLost)
        await bob.close()  # the relay sees the drop: a leave
        await room.until(lambda: len(ann.member.members) == 1)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("code", "outcome", "error"),
    [
        ("ended", RoomOutcome.GONE, Gone),
        ("not_admitted", RoomOutcome.REFUSED, Refused),
        ("bad_proof", RoomOutcome.REFUSED, Refused),
        ("full", RoomOutcome.REFUSED, Refused),
    ],
)
def test_relay_errors_decide_the_outcome(
    code: str, outcome: RoomOutcome, error: type[Exception]
) -> None:
    async def scenario() -> None:
        room = Room()
        ann = room.join("ann", room.new.creator_link)
        await room.until(lambda: ann.member.epoch == 1)
        room.relay.close(room.sockets["ann"].connection, code)
        room.relay.settle()
        await room.until(lambda: ann.is_over)
        assert ann.outcome is outcome
        assert isinstance(ann.failure, error)

    asyncio.run(scenario())


def test_a_used_invite_is_refused() -> None:
    async def scenario() -> None:
        room = Room(invites=1)
        ann = room.join("ann", room.new.creator_link)
        await room.until(lambda: ann.member.epoch == 1)
        guest = room.join("guest", room.new.invite_links[0])
        await room.until(lambda: guest.member.epoch == 2)
        again = room.join("again", room.new.invite_links[0])
        await room.until(lambda: again.is_over)
        assert again.outcome is RoomOutcome.REFUSED

    asyncio.run(scenario())
