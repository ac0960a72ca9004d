"""The room window under Extra Lock, driven by textual's pilot against the loopback relay
double: it locks itself when idle (member dropped, frames unread, file key forgotten), a
wrong passphrase opens nothing, the right one reads what waited, Ctrl-X leaves and wipes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from tests.integration.test_room_cli_relay import running_relay
from tests.servers import ManualClock

from atopos.cli.room_lock import LockPlan
from atopos.cli.room_tui import RoomApp
from atopos.client.rooms import RoomSession
from atopos.client.rooms_creation import create_room
from atopos.client.rooms_lock import LockedRoomState
from atopos.client.transport import Transport
from atopos.clock import SystemClock
from atopos.crypto.kdf import Argon2Params
from atopos.randomness import system_random_bytes

FAST = Argon2Params(memory_kib=8192, iterations=1, lanes=1)
WAIT = 30.0


async def _until(pilot: object, done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not done():
        assert time.monotonic() < deadline, what
        await pilot.pause(0.05)  # type: ignore[attr-defined]


def test_idle_lock_drops_the_member_and_panic_wipes_everything(tmp_path: Path) -> None:
    with running_relay() as (url, _rooms):
        asyncio.run(_scenario(url, tmp_path))


async def _scenario(url: str, home: Path) -> None:
    transport = Transport(url)
    created = await create_room(transport, system_random_bytes, name="Plans")
    creator = created.new.creator_link
    store = LockedRoomState.create(home, "open sesame", system_random_bytes, params=FAST)
    clock = ManualClock()
    app = RoomApp(
        transport,
        LockPlan(created.new.member_link.text(), "bob", store),
        idle_lock=60,
        clock=clock,
    )
    async with RoomSession.open(
        transport, creator, "ann", system_random_bytes, SystemClock()
    ) as ann:
        async with app.run_test() as pilot:
            await _until(pilot, lambda: len(app.members) == 2, "bob joined")
            await _until(pilot, lambda: store.path.exists(), "state saved")
            clock.advance(61)
            await _until(pilot, lambda: app.is_locked, "idle lock")
            session = app.session
            assert session is not None
            assert session.is_suspended
            assert not store.is_unlocked
            data = store.path.read_bytes()
            assert b"bob" not in data
            assert creator.room_id not in data

            await ann.send_text("while you were away")
            await pilot.pause(0.5)
            assert not any("while you were away" in line for line in app.lines)

            await pilot.click("#input")
            await pilot.press(*"open sesamE", "enter")
            await _until(pilot, lambda: "Wrong passphrase." in app.lines, "refused")
            assert app.is_locked
            assert session.is_suspended

            await pilot.press(*"open sesame", "enter")
            await _until(
                pilot,
                lambda: any("ann [0]: while you were away" in line for line in app.lines),
                "the waiting frame was read after unlock",
            )
            assert not app.is_locked

            await pilot.press("ctrl+x")
            await _until(pilot, lambda: app.outcome is not None, "panic")
        assert not store.path.exists()
        assert LockedRoomState.files(home) == []
        assert app.lines == []
        # the others saw bob leave at once
        deadline = time.monotonic() + WAIT
        while len(ann.member.members) != 1:
            assert time.monotonic() < deadline, ann.member.members
            await asyncio.sleep(0.05)  # polling the other member's state
