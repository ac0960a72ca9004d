"""Running one room session for the CLI: connect, keep Extra Lock state, report the outcome.

Shared by the script driver and the terminal UI: `joined_session` opens the session for a
`LockPlan`, saves the member's state after every change when Extra Lock is on, and wipes
that state when the session is over (left, ended, removed, refused or lost).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from atopos.cli.room_lock import LockPlan
from atopos.client.rooms import RoomOutcome, RoomSession
from atopos.client.rooms_lock import RoomState
from atopos.client.transport import Transport
from atopos.clock import SystemClock
from atopos.errors import AtoposError
from atopos.protocol.room_errors import RoomProtocolError
from atopos.protocol.room_link import RoomLink, parse_room_link
from atopos.protocol.room_member import RoomMember
from atopos.randomness import system_random_bytes

__all__ = ["joined_session", "parse_link", "run_script_session"]


def parse_link(text: str) -> RoomLink:
    from atopos.errors import InvalidInput

    try:
        return parse_room_link(text)
    except RoomProtocolError as error:
        raise InvalidInput(error.message) from None


@contextlib.asynccontextmanager
async def joined_session(transport: Transport, plan: LockPlan) -> AsyncIterator[RoomSession]:
    """The session for `plan`, with Extra Lock saving and wiping wired in."""
    link = parse_link(plan.link)
    store = plan.store
    try:
        if len(plan.display_name.encode("utf-8")) > 126:
            from atopos.errors import InvalidInput

            raise InvalidInput("A display name is at most 126 bytes of UTF-8.")
        async with RoomSession.open(
            transport.with_server(link.base_url),
            link,
            plan.display_name,
            system_random_bytes,
            SystemClock(),
        ) as session:
            if store is not None:

                def save(member: RoomMember) -> None:
                    if store.is_unlocked:
                        store.save(RoomState(plan.link, plan.display_name, member))

                session.on_change = save
            yield session
    finally:
        if store is not None:
            store.wipe()


async def run_script_session(
    transport: Transport, plan: LockPlan
) -> tuple[RoomOutcome | None, AtoposError | None]:
    from atopos.cli.room_script import run_script

    async with joined_session(transport, plan) as session:
        await run_script(session)
    return session.outcome, session.failure
