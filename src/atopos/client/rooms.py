"""An asyncio room client: one `RoomMember` driven over one WebSocket to the relay.

`RoomSession.open` connects through the `Transport` (TLS policy and pins apply), then a
receive loop feeds every relay frame to the sans-I/O member (docs/protocol/rooms.md,
section 17), sends what it queues, re-keys the member when `needs_update` says so, and hands
the interface typed events (`RoomEvent`) through `events()`. Commands (`send_text`, `admit`,
`refuse`, `leave`, `end`) go through the same member and are flushed at once.

Reconnect policy: none. The relay treats a dropped connection as a leave (rooms.md section
12), and a member that comes back would be a new member with new keys anyway; so a lost
connection ends the session with `ConnectionLost`, and the person joins again with the link.
Liveness is the WebSocket protocol's ping (websockets' default, every 20 s, well inside the
relay's 120 s idle timeout); a relay that stops answering pings drops the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from websockets.exceptions import ConnectionClosed

from atopos.clock import Clock
from atopos.crypto.randomness import RandomBytes
from atopos.errors import AtoposError, Gone, NetworkError, Refused
from atopos.protocol.room_errors import RoomProtocolError
from atopos.protocol.room_events import MemberEvent, RelayError, RemovedFromRoom, RoomEnded
from atopos.protocol.room_link import RoomLink
from atopos.protocol.room_member import MemberState, RoomMember

__all__ = [
    "MAX_HELD_FRAMES",
    "UPDATE_CHECK_SECONDS",
    "ConnectionLost",
    "Locked",
    "ProtocolNotice",
    "RoomEvent",
    "RoomOutcome",
    "RoomSession",
    "RoomSocket",
    "error_for_relay_code",
    "websocket_path",
]

# Frames kept unread while the window is locked; a room busier than that costs the seat.
MAX_HELD_FRAMES = 10_000

# How often the session asks the member whether it should re-key when no frame arrives.
UPDATE_CHECK_SECONDS = 5.0

_GONE_CODES = frozenset({"ended"})
_REFUSED_CODES = frozenset({"bad_proof", "not_admitted", "full", "rate_limited"})


class Locked(AtoposError):
    """The session is suspended by Extra Lock's idle lock: type the passphrase first."""

    def __init__(self) -> None:
        super().__init__("The room is locked; type the Extra Lock passphrase first.")


@dataclass(frozen=True, slots=True)
class ProtocolNotice:
    """A relay frame the member refused (state unchanged): shown as a notice, then go on."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    """The connection dropped before the room ended: the relay counts this as a leave."""

    message: str


RoomEvent: TypeAlias = MemberEvent | ProtocolNotice | ConnectionLost


class RoomOutcome(enum.Enum):
    """How a session ended, for exit codes: a clean end, the room gone, refused, network."""

    LEFT = "left"
    ENDED = "ended"
    GONE = "gone"
    REFUSED = "refused"
    NETWORK = "network"


class RoomSocket(Protocol):
    """What the session needs of a WebSocket (websockets' ClientConnection has it)."""

    async def send(self, message: str) -> None: ...

    async def recv(self) -> str | bytes: ...

    async def close(self) -> None: ...


def websocket_path(link: RoomLink) -> str:
    """The relay's WebSocket path for the room a link names (rooms.md section 2)."""
    return "/api/v1/rooms/" + link.room_path.rsplit("/", 1)[1]


def error_for_relay_code(code: str, message: str) -> AtoposError:
    """The Atopos error (hence exit code) for a relay `error` frame's code."""
    if code in _GONE_CODES:
        return Gone("This room has ended or never existed.")
    if code in _REFUSED_CODES:
        sentences = {
            "bad_proof": "The relay refused this link (an invite already used, or a bad link).",
            "not_admitted": "The members of this room did not admit you.",
            "full": "This room is full.",
            "rate_limited": "The relay is refusing connections from here for now.",
        }
        return Refused(sentences.get(code, "The relay refused to let you in."))
    return NetworkError(f"The relay closed the connection ({code}).")


class RoomSession:
    """One member in one room over one connection (see the module docstring)."""

    def __init__(self, member: RoomMember, socket: RoomSocket, clock: Clock) -> None:
        self._member: RoomMember | None = member
        self._held: list[str | bytes] = []  # frames that came while suspended (locked)
        self._socket = socket
        self._clock = clock
        self._events: asyncio.Queue[RoomEvent | None] = asyncio.Queue()
        self._send_lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self.outcome: RoomOutcome | None = None
        self.failure: AtoposError | None = None
        self.expires_at: int | None = None
        # Called after every frame and command (Extra Lock saves the state there).
        self.on_change: Callable[[RoomMember], None] | None = None
        self._active_or_over = asyncio.Event()

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        transport_for_link: _WebSocketOpener,
        link: RoomLink,
        display_name: str,
        random_bytes: RandomBytes,
        clock: Clock,
    ) -> AsyncIterator[RoomSession]:
        """Connect to the relay of `link` and run the receive loop while the block runs.
        On exit the connection is closed (a leave, for the relay, if none was sent)."""
        member = RoomMember(link, display_name, random_bytes)
        async with transport_for_link.websocket(websocket_path(link)) as socket:
            session = cls(member, socket, clock)
            session.start()
            try:
                yield session
            finally:
                await session.close()

    def start(self) -> None:
        """Start the receive loop (done by `open`; tests that bring a socket call it)."""
        self._reader = asyncio.create_task(self._receive_loop())

    # -- what the interface reads -------------------------------------------------------

    async def events(self) -> AsyncIterator[RoomEvent]:
        """Every event in order, until the session is over."""
        while True:
            event = await self._events.get()
            if event is None:
                return
            yield event

    @property
    def member(self) -> RoomMember:
        """The member; `Locked` while the session is suspended (Extra Lock's idle lock)."""
        if self._member is None:
            raise Locked
        return self._member

    @property
    def is_suspended(self) -> bool:
        return self._member is None

    def suspend(self) -> RoomMember:
        """Hand the member over (to be saved under Extra Lock) and forget it: until `resume`
        frames wait unread (at most `MAX_HELD_FRAMES`) and commands raise `Locked`."""
        member = self.member
        self._member = None
        return member

    async def resume(self, member: RoomMember) -> None:
        """Take the member back (as loaded from the lock) and read the frames that waited."""
        self._member = member
        held, self._held = self._held, []
        for frame in held:
            self._handle(frame)
        with contextlib.suppress(ConnectionClosed):
            await self._flush()

    @property
    def is_over(self) -> bool:
        return self.outcome is not None

    async def until_active(self) -> bool:
        """Wait until the member holds an epoch (True) or the session is over (False)."""
        await self._active_or_over.wait()
        return not self.is_over

    # -- commands -------------------------------------------------------------------------

    async def send_text(self, text: str) -> None:
        self.member.send_text(text)
        await self._flush()

    async def admit(self, index: int) -> None:
        self.member.admit(index)
        await self._flush()

    async def refuse(self, index: int) -> None:
        self.member.refuse(index)
        await self._flush()

    async def end(self) -> None:
        """End the room for everyone (creator link only)."""
        self.member.end()
        await self._flush()

    async def leave(self) -> None:
        """Publish the signing keys, drop every key, and close the connection."""
        member = self._member
        if member is not None and member.state in (MemberState.WAITING, MemberState.ACTIVE):
            member.leave()
            with contextlib.suppress(ConnectionClosed, OSError):
                await self._flush()
        self._finish(RoomOutcome.LEFT)
        await self.close()

    async def close(self) -> None:
        """Close the connection and stop the loop; keys held by the member are dropped."""
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        with contextlib.suppress(Exception):
            await self._socket.close()
        self._finish(self.outcome or RoomOutcome.LEFT)

    # -- the loop ---------------------------------------------------------------------------

    async def _flush(self) -> None:
        member = self._member
        if member is None:
            return
        async with self._send_lock:
            for text in member.outgoing():
                await self._socket.send(text)
        if self.on_change is not None and member.state is not MemberState.CLOSED:
            self.on_change(member)

    async def _receive_loop(self) -> None:
        try:
            while self.outcome is None:
                try:
                    frame = await asyncio.wait_for(self._socket.recv(), UPDATE_CHECK_SECONDS)
                except TimeoutError:
                    await self._maybe_update()
                    continue
                if self._member is None:
                    if len(self._held) >= MAX_HELD_FRAMES:
                        raise ConnectionClosed(None, None)  # locked too long: give up the seat
                    self._held.append(frame)
                    continue
                self._handle(frame)
                # A send that fails because the relay closed is not the end yet: frames it
                # sent before closing (`ended`, an `error`) are still there to read.
                with contextlib.suppress(ConnectionClosed):
                    await self._maybe_update()
                    await self._flush()
                if self._member is not None and self._member.state is MemberState.CLOSED:
                    self._finish(self.outcome or RoomOutcome.LEFT)
        except ConnectionClosed:
            member = self._member
            if self.outcome is None and member is not None and member.state is MemberState.LEAVING:
                self._finish(RoomOutcome.LEFT)  # we had said goodbye already
            elif self.outcome is None:
                self._push(ConnectionLost("The connection to the relay was lost; you left."))
                self.failure = NetworkError("The connection to the relay was lost.")
                self._finish(RoomOutcome.NETWORK)
        except OSError:
            self._push(ConnectionLost("The connection to the relay failed; you left."))
            self.failure = NetworkError("The connection to the relay failed.")
            self._finish(RoomOutcome.NETWORK)

    def _handle(self, frame: str | bytes) -> None:
        member = self.member
        try:
            events = member.receive(frame, self._clock.now())
        except RoomProtocolError as error:
            self._push(ProtocolNotice(error.code, error.message))
            return
        for event in events:
            self._push(event)
            self._note(event)
        if member.state is MemberState.ACTIVE:
            self._active_or_over.set()

    def _note(self, event: MemberEvent) -> None:
        """Remember what decides the session's outcome."""
        if isinstance(event, RoomEnded):
            self._finish(RoomOutcome.ENDED)
        elif isinstance(event, RemovedFromRoom):
            self.failure = Refused("The other members removed you from the room.")
            self._finish(RoomOutcome.REFUSED)
        elif isinstance(event, RelayError):
            self.failure = error_for_relay_code(event.code, event.message)
            if isinstance(self.failure, Gone):
                self._finish(RoomOutcome.GONE)
            elif isinstance(self.failure, Refused):
                self._finish(RoomOutcome.REFUSED)
            else:
                self._finish(RoomOutcome.NETWORK)
        elif hasattr(event, "expires_at"):
            self.expires_at = event.expires_at

    async def _maybe_update(self) -> None:
        member = self._member
        if member is not None and member.needs_update(self._clock.now()):
            try:
                member.update(self._clock.now())
            except RoomProtocolError as error:
                self._push(ProtocolNotice(error.code, error.message))
            await self._flush()

    def _push(self, event: RoomEvent) -> None:
        self._events.put_nowait(event)

    def _finish(self, outcome: RoomOutcome) -> None:
        if self.outcome is None:
            self.outcome = outcome
            self._events.put_nowait(None)
            self._active_or_over.set()


class _WebSocketOpener(Protocol):
    def websocket(
        self, path: str
    ) -> contextlib.AbstractAsyncContextManager[RoomSocket]: ...  # pragma: no cover
