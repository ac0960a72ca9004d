"""`atopos room join`: the terminal window (textual).

Messages and notices scroll in the main pane; the side pane lists members by short name and
number, the safety code (shown before the first message and again whenever membership
changes) and the room's remaining lifetime. The input line takes text or `/leave`, `/end`,
`/admit N`, `/refuse N`; Ctrl-Q leaves like `/leave`. Ctrl-X is the panic key: wipe the
Extra Lock file, leave, quit at once. With Extra Lock the window locks itself after
`idle_lock` seconds without a key: the member's state is saved, dropped from memory, and
frames wait unread until the passphrase is typed again.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, RichLog, Static

from atopos.cli.room_lock import LockPlan
from atopos.cli.room_script import apply_command, parse_command
from atopos.cli.room_session import joined_session
from atopos.cli.terminal_text import visible_text
from atopos.client.rooms import (
    ConnectionLost,
    ProtocolNotice,
    RoomEvent,
    RoomOutcome,
    RoomSession,
)
from atopos.client.rooms_lock import RoomState, RoomStateReplaced, WrongRoomPassphrase
from atopos.client.transport import Transport
from atopos.clock import Clock, SystemClock
from atopos.crypto.room_safety import safety_code_lines
from atopos.errors import AtoposError
from atopos.protocol.room_errors import RoomProtocolError
from atopos.protocol.room_events import (
    EpochStarted,
    JoinRequested,
    MemberLeft,
    MessageReceived,
    MessagesMissing,
    RelayError,
    RemovedFromRoom,
    RoomClosing,
    RoomEnded,
    RoomUnlocked,
    SequenceGap,
)

__all__ = ["RoomApp", "run_tui"]


class RoomApp(App[None]):
    """One room in a terminal window (see the module docstring)."""

    CSS = """
    #side { width: 32; border-left: solid $accent; padding: 0 1; }
    #log { height: 1fr; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+x", "panic", "Panic: leave and wipe", priority=True),
        # Quitting is leaving (keys published, then dropped), not a silent drop.
        Binding("ctrl+q", "leave", "Leave", priority=True),
    ]

    def __init__(
        self,
        transport: Transport,
        plan: LockPlan,
        idle_lock: float = 300,
        clock: Clock | None = None,
    ) -> None:
        super().__init__()
        self.transport = transport
        self.plan = plan
        self.idle_lock = idle_lock
        self.session: RoomSession | None = None
        self.outcome: RoomOutcome | None = None
        self.failure: AtoposError | None = None
        self.safety_code: str | None = None
        self.members: tuple[tuple[int, str], ...] = ()
        self.expires_at: int | None = None
        self.is_locked = False
        self.lines: list[str] = []  # what the log shows, for tests and the pilot
        self._clock = clock or SystemClock()
        self._last_key = self._clock.monotonic()

    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical():
                yield RichLog(id="log", wrap=True, markup=False)
                yield Input(placeholder="Message, or /leave /end /admit N /refuse N", id="input")
            yield Static("", id="side")

    async def on_mount(self) -> None:
        self.run_worker(self._run_session(), exclusive=True)
        self.set_interval(1.0, self._tick)

    # -- the session ---------------------------------------------------------------------

    async def _run_session(self) -> None:
        try:
            async with joined_session(self.transport, self.plan) as session:
                self.session = session
                self._show("Connecting…")
                async for event in session.events():
                    self._on_event(event)
                self.outcome, self.failure = session.outcome, session.failure
        except AtoposError as error:
            self.failure = error
            self.outcome = RoomOutcome.NETWORK
        self.exit()

    def _on_event(self, event: RoomEvent) -> None:
        match event:
            case RoomUnlocked():
                self.expires_at = event.expires_at
                title = event.name or "(no name)"
                self._show(f"Room {title}{' · knock mode' if event.is_knock else ''}.")
            case EpochStarted():
                self.members = event.members
                names = dict(event.members)
                for index in event.joined:
                    self._show(f"→ {names.get(index, '?')} [{index}] joined.")
                for index in event.left:
                    self._show(f"← [{index}] is out of the room.")
                if event.is_safety_code_changed or self.safety_code is None:
                    self.safety_code = event.safety_code
                    self._show(
                        "Safety code (compare it with the others over another channel, "
                        "line by line):"
                    )
                    for line in safety_code_lines(event.safety_code):
                        self._show(f"  {line}")
                self._show(f"(epoch {event.epoch}: {event.reason})")
            case MessageReceived():
                self._show(f"{event.name} [{event.sender}]: {event.text}")
            case JoinRequested():
                self._show(
                    f"{event.name} [{event.index}] knocks: /admit {event.index} or "
                    f"/refuse {event.index}."
                )
            case MemberLeft():
                self._show(f"[{event.index}] left.")
            case MessagesMissing():
                self._show(f"{len(event.counters)} message(s) of [{event.sender}] never came.")
            case SequenceGap():
                self._show("The relay dropped some frames.")
            case RemovedFromRoom():
                self._show("You were removed from the room.")
            case RoomClosing():
                self._show(f"The room closes in {event.seconds} s ({event.reason}).")
            case RoomEnded():
                self._show(f"The room has ended ({event.reason}).")
            case RelayError():
                self._show(f"The relay closed the connection: {event.code}.")
            case ProtocolNotice():
                self._show(f"Refused a frame from the relay ({event.code}).")
            case ConnectionLost():
                self._show(event.message)
            case _:
                pass
        self._update_side()

    def _show(self, line: str) -> None:
        text = visible_text(line)
        self.lines.append(text)
        with contextlib.suppress(Exception):
            self.query_one("#log", RichLog).write(text)

    def _update_side(self) -> None:
        parts = ["Members:"]
        parts += [f"  [{index}] {visible_text(name)[:20]}" for index, name in self.members]
        parts.append("")
        parts.append("Safety code:")
        code_lines = safety_code_lines(self.safety_code) if self.safety_code else ("…",)
        parts += [f"  {line}" for line in code_lines]
        if self.expires_at is not None:
            left = max(0, int(self.expires_at - self._clock.now()))
            parts.append(f"\nEnds in {left // 3600}h {left % 3600 // 60:02d}m")
        if self.is_locked:
            parts.append("\nLOCKED: type the passphrase")
        with contextlib.suppress(Exception):
            self.query_one("#side", Static).update("\n".join(parts))

    def _tick(self) -> None:
        self._update_side()
        store = self.plan.store
        is_idle = self._clock.monotonic() - self._last_key >= self.idle_lock
        if store is not None and not self.is_locked and is_idle and self.session is not None:
            self.lock()

    # -- locking -----------------------------------------------------------------------

    def lock(self) -> None:
        """Save the member's state, then drop it and the file key from memory and hide the
        conversation; frames wait unread in the session until `unlock`."""
        store = self.plan.store
        session = self.session
        if store is None or session is None or session.is_over or session.is_suspended:
            return
        store.save(RoomState(self.plan.link, self.plan.display_name, session.suspend()))
        store.lock()
        self.is_locked = True
        with contextlib.suppress(Exception):
            self.query_one("#log", RichLog).clear()
            self.query_one("#input", Input).password = True
        self._update_side()

    async def unlock(self, passphrase: str) -> str | None:
        """Open the state file with `passphrase` and give the member back to the session;
        why not, as a line to show, when it did not open."""
        store = self.plan.store
        if store is None or self.session is None:
            return None
        try:
            state = store.open(passphrase)
        except RoomStateReplaced as replaced:
            return replaced.message
        except WrongRoomPassphrase:
            return "Wrong passphrase."
        if state.member is None:
            return "Wrong passphrase."
        self.is_locked = False
        with contextlib.suppress(Exception):
            self.query_one("#input", Input).password = False
            log = self.query_one("#log", RichLog)
            for line in self.lines:
                log.write(line)
        await self.session.resume(state.member)
        self._update_side()
        return None

    # -- input ---------------------------------------------------------------------------

    def on_key(self) -> None:
        self._last_key = self._clock.monotonic()

    async def on_input_submitted(self, message: Input.Submitted) -> None:
        self._last_key = self._clock.monotonic()
        text = message.value
        message.input.value = ""
        if self.is_locked:
            refusal = await self.unlock(text)
            if refusal is not None:
                self._show(refusal)
            return
        session = self.session
        if session is None:
            return
        try:
            command = parse_command(text)
            if command is None:
                return
            await apply_command(session, command)
            if command[0] == "send":
                self._show(f"me: {command[2]}")
        except (ValueError, RoomProtocolError) as error:
            self._show(error.message if isinstance(error, RoomProtocolError) else str(error))

    async def action_leave(self) -> None:
        """Leave the room the ordinary way (as `/leave`) and quit."""
        if self.session is not None and not self.session.is_suspended:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.session.leave(), 5)
        self.outcome = self.outcome or RoomOutcome.LEFT
        self.exit()

    async def action_panic(self) -> None:
        """Leave, wipe every local trace of the room, quit: at once."""
        if self.plan.store is not None:
            self.plan.store.wipe()
        if self.session is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.session.leave(), 2)
        self.lines.clear()
        self.outcome = RoomOutcome.LEFT
        self.exit()


def run_tui(
    transport: Transport, plan: LockPlan, idle_lock: float
) -> tuple[RoomOutcome | None, AtoposError | None]:
    app = RoomApp(transport, plan, idle_lock)
    app.run()
    return app.outcome, app.failure
