"""`atopos room join --script`: lines from stdin in, one JSON object per event out.

A line is text to send, or a command (`/leave`, `/end`, `/admit N`, `/refuse N`); an empty
line is ignored; end of input leaves the room. Lines wait until the member holds its first
epoch (so `echo hi | atopos room join LINK --script` says hi once it is in). Every event
is printed as one JSON line (`event_json`; the fields are listed in docs/cli.md, "Script
events"), flushed at once so a program at the other end of the pipe sees it when it happens.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Callable
from typing import TextIO

from atopos.client.rooms import ConnectionLost, ProtocolNotice, RoomEvent, RoomSession
from atopos.protocol.room_errors import RoomProtocolError
from atopos.protocol.room_events import (
    EpochStarted,
    JoinRequested,
    MemberLeft,
    MessageDelivered,
    MessageReceived,
    MessagesMissing,
    RelayError,
    RemovedFromRoom,
    RoomClosing,
    RoomEnded,
    RoomUnlocked,
    SequenceGap,
    Welcomed,
)

__all__ = ["Command", "event_json", "parse_command", "run_script"]

Command = tuple[str, int | None, str | None]


def event_json(event: RoomEvent) -> dict[str, object]:
    """The JSON object printed for `event` (docs/cli.md, "Script events")."""
    match event:
        case RoomUnlocked():
            return {
                "event": "unlocked",
                "name": event.name,
                "expires_at": event.expires_at,
                "knock": event.is_knock,
                "invite_only": event.is_invite_only,
            }
        case Welcomed():
            return {"event": "welcomed", "index": event.index}
        case JoinRequested():
            return {"event": "join_requested", "index": event.index, "name": event.name}
        case EpochStarted():
            return {
                "event": "epoch",
                "epoch": event.epoch,
                "reason": event.reason,
                "members": [{"index": i, "name": n} for i, n in event.members],
                "joined": list(event.joined),
                "left": list(event.left),
                "safety_code": event.safety_code,
                "safety_code_changed": event.is_safety_code_changed,
            }
        case MessageReceived():
            return {
                "event": "message",
                "sender": event.sender,
                "name": event.name,
                "text": event.text,
                "epoch": event.epoch,
                "counter": event.counter,
            }
        case MessageDelivered():
            return {
                "event": "delivered",
                "epoch": event.epoch,
                "counter": event.counter,
                "seq": event.seq,
            }
        case MessagesMissing():
            return {
                "event": "missing",
                "sender": event.sender,
                "epoch": event.epoch,
                "counters": list(event.counters),
            }
        case SequenceGap():
            return {"event": "gap", "expected": event.expected, "received": event.received}
        case MemberLeft():
            return {"event": "left", "index": event.index, "published_keys": event.published_keys}
        case RemovedFromRoom():
            return {"event": "removed", "epoch": event.epoch}
        case RoomClosing():
            return {"event": "closing", "seconds": event.seconds, "reason": event.reason}
        case RoomEnded():
            return {"event": "ended", "reason": event.reason}
        case RelayError():
            return {"event": "relay_error", "code": event.code, "message": event.message}
        case ProtocolNotice():
            return {"event": "notice", "code": event.code, "message": event.message}
        case ConnectionLost():
            return {"event": "connection_lost", "message": event.message}


def parse_command(line: str) -> Command | None:
    """("send", None, text) | ("leave"|"end", None, None) | ("admit"|"refuse", N, None);
    None for an empty line. ValueError (one sentence) for a command that is not one."""
    text = line.rstrip("\r\n")
    if not text.strip():
        return None
    if not text.startswith("/") or text.startswith("//"):
        return ("send", None, text[1:] if text.startswith("//") else text)
    word, _, rest = text[1:].strip().partition(" ")
    if word in ("leave", "end") and not rest.strip():
        return (word, None, None)
    if word in ("admit", "refuse"):
        try:
            return (word, int(rest.strip()), None)
        except ValueError:
            raise ValueError(f"/{word} takes the member's number, e.g. /{word} 3.") from None
    raise ValueError(f"Unknown command /{word}; try /leave, /end, /admit N or /refuse N.")


async def apply_command(session: RoomSession, command: Command) -> None:
    """Carry out one parsed command on the session."""
    action, index, text = command
    if action == "send":
        assert text is not None
        await session.send_text(text)
    elif action == "leave":
        await session.leave()
    elif action == "end":
        await session.end()
    elif action == "admit":
        assert index is not None
        await session.admit(index)
    elif action == "refuse":
        assert index is not None
        await session.refuse(index)


def _print(out: TextIO, document: dict[str, object]) -> None:
    out.write(json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n")
    out.flush()


async def run_script(
    session: RoomSession,
    *,
    read_line: Callable[[], str] = sys.stdin.readline,
    out: TextIO = sys.stdout,
) -> None:
    """Print events and carry out stdin lines until the session is over."""

    async def printer() -> None:
        async for event in session.events():
            _print(out, event_json(event))

    printing = asyncio.create_task(printer())
    reading = asyncio.create_task(_read_commands(session, read_line, out))
    done, _ = await asyncio.wait({printing, reading}, return_when=asyncio.FIRST_COMPLETED)
    if reading in done:
        await printing  # end of input: the session has left; print what was left to print
    else:
        reading.cancel()  # stdin's reader thread stays blocked; the process exits anyway


async def _read_commands(session: RoomSession, read_line: Callable[[], str], out: TextIO) -> None:
    lines = _lines_in_background(read_line)
    while not session.is_over:
        line = await lines.get()
        # Lines wait for the member's first epoch: a bot may write before the room is open.
        if not await session.until_active():
            return
        if not line:
            await session.leave()
            return
        try:
            command = parse_command(line)
            if command is not None:
                await apply_command(session, command)
        except (ValueError, RoomProtocolError) as error:
            message = error.message if isinstance(error, RoomProtocolError) else str(error)
            _print(out, {"event": "command_error", "message": message})


def _lines_in_background(read_line: Callable[[], str]) -> asyncio.Queue[str]:
    """Lines read by a daemon thread: a blocked read of stdin must not keep the process
    alive once the room is over (asyncio's own executor threads would)."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def pump() -> None:
        while True:
            try:
                line = read_line()
            except (OSError, ValueError):
                line = ""
            try:
                loop.call_soon_threadsafe(lines.put_nowait, line)
            except RuntimeError:  # the loop is closed: the room is over
                return
            if not line:
                return

    threading.Thread(target=pump, daemon=True).start()
    return lines
