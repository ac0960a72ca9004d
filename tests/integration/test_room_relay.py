"""The room relay on a real server (127.0.0.1, real `websockets` clients running
`RoomMember`): conversations, what the relay holds, room end, admission, timeouts, limits."""

from __future__ import annotations

import asyncio
from pathlib import Path

from atopos.protocol.room_member import MemberState
from tests.room_relay_server import Peer, join, relay_server, until
from tests.servers import ManualClock


def _active(*peers: Peer) -> bool:
    return all(p.member.state is MemberState.ACTIVE for p in peers)


def test_three_members_talk_and_share_the_safety_code(tmp_path: Path) -> None:
    with relay_server(tmp_path, ManualClock()) as server:
        new = server.create_room()

        async def scenario() -> None:
            alice = await join(server, new.creator_link, "alice")
            await until(lambda: _active(alice))
            bob = await join(server, new.member_link, "bob")
            await until(lambda: _active(alice, bob) and alice.member.epoch == bob.member.epoch)
            carol = await join(server, new.member_link, "carol")
            await until(
                lambda: (
                    _active(alice, bob, carol)
                    and len({p.member.epoch for p in (alice, bob, carol)}) == 1
                )
            )
            await alice.say("one")
            await bob.say("two")
            await carol.say("three")
            await alice.say("four")
            await until(lambda: len(bob.texts()) == 3 and len(carol.texts()) == 3)
            await until(lambda: len(alice.texts()) == 2)
            codes = {p.member.safety_code for p in (alice, bob, carol)}
            assert len(codes) == 1
            assert None not in codes
            assert [t for _, t in bob.texts()] == ["one", "three", "four"]
            assert [t for _, t in carol.texts()] == ["one", "two", "four"]
            assert [t for _, t in alice.texts()] == ["two", "three"]
            assert [p.errors for p in (alice, bob, carol)] == [[], [], []]

        asyncio.run(scenario())
