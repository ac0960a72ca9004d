"""The room relay on a real server (127.0.0.1, real `websockets` clients running
`RoomMember`): conversations, what the relay holds, room end, admission, timeouts, limits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path

import httpx
import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from atopos.crypto.base64url import b64url_decode
from atopos.protocol.room_creation import NewRoom, make_room
from atopos.protocol.room_events import (
    JoinRequested,
    MemberLeft,
    MessageDelivered,
    RelayError,
    RoomClosing,
    RoomEnded,
    RoomUnlocked,
)
from atopos.protocol.room_member import MemberState
from atopos.protocol.room_relay import RelayLimits
from atopos.server.rooms.limits import RoomNodeLimits
from tests.room_relay_server import Peer, RelayServer, join, relay_server, until
from tests.rooms_support import SeededRandom, chains_of, held_values, read_with
from tests.servers import ManualClock, ServerProcess


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
            peers = (alice, bob, carol)
            codes = {p.member.safety_code for p in (alice, bob, carol)}
            assert len(codes) == 1
            assert None not in codes
            sent = {"alice": ["one", "four"], "bob": ["two"], "carol": ["three"]}
            index = {p.member.index: name for p, name in zip(peers, sent, strict=True)}
            for peer, name in zip(peers, sent, strict=True):
                by_sender: dict[str, list[str]] = {}
                for sender, text in peer.texts():
                    by_sender.setdefault(index[sender], []).append(text)
                assert by_sender == {n: t for n, t in sent.items() if n != name}
            assert [p.errors for p in (alice, bob, carol)] == [[], [], []]

        asyncio.run(scenario())


def _room_key(new: object) -> str:
    return new.creation.room_id  # type: ignore[attr-defined,no-any-return]


async def _three(server: RelayServer, new: NewRoom) -> tuple[Peer, Peer, Peer]:
    alice = await join(server, new.creator_link, "alice")
    await until(lambda: _active(alice))
    bob = await join(server, new.member_link, "bob")
    await until(lambda: _active(alice, bob) and alice.member.epoch == bob.member.epoch)
    carol = await join(server, new.member_link, "carol")
    await until(
        lambda: (
            _active(alice, bob, carol) and len({p.member.epoch for p in (alice, bob, carol)}) == 1
        )
    )
    return alice, bob, carol


async def _unknown_room_answer(server: RelayServer, room_key: str) -> tuple[str, int | None]:
    async with connect(f"{server.ws_url}/api/v1/rooms/{room_key}", open_timeout=5) as socket:
        text = await asyncio.wait_for(socket.recv(), 5)
        with contextlib.suppress(ConnectionClosed):
            await asyncio.wait_for(socket.recv(), 5)
        await socket.wait_closed()
        return str(text), socket.close_code


def test_the_relay_state_and_every_frame_decrypt_nothing_without_the_link(
    tmp_path: Path,
) -> None:
    with relay_server(tmp_path, ManualClock()) as server:
        new = server.create_room()

        async def scenario() -> None:
            peers = await _three(server, new)
            for peer, text in zip(peers, ["north", "south", "east"], strict=True):
                await peer.say(f"secret plan {text}")
            await until(lambda: all(len(p.texts()) == 2 for p in peers))
            relay_state = server.rooms.registry.rooms[_room_key(new)]
            relay_frames = [t for p in peers for t in p.received]
            member_frames = [t for p in peers for t in p.sent]
            values, keys = held_values(relay_state, relay_frames, member_frames)
            room_id = b64url_decode(_room_key(new))
            assert read_with(values, keys, relay_frames, room_id) == []
            # The same attacker with one member's state reads: the search is not blind.
            values_b, keys_b = held_values(relay_state, relay_frames, peers[1].member)
            found = read_with(values_b, keys_b, relay_frames, room_id, chains_of(peers[1].member))
            assert any("secret plan" in text for text in found)

        asyncio.run(scenario())


def test_creator_end_wipes_the_room_and_a_new_connection_gets_4404(tmp_path: Path) -> None:
    limits = RoomNodeLimits(relay=RelayLimits(closing_seconds=0), tick_seconds=0.02)
    with relay_server(tmp_path, ManualClock(), limits) as server:
        new = server.create_room()

        async def scenario() -> None:
            alice, bob, carol = await _three(server, new)
            alice.member.end()
            await alice.flush()
            for peer in (alice, bob, carol):
                assert await peer.closed() == 1000
                assert any(isinstance(e, RoomEnded) for e in peer.events)
            assert server.rooms.registry.rooms == {}
            assert server.rooms.bus.subscriptions(_room_key(new)) == 0
            text, code = await _unknown_room_answer(server, _room_key(new))
            assert code == 4404
            assert '"code":"ended"' in text

        asyncio.run(scenario())


def test_ttl_ends_the_room_with_an_injected_clock(tmp_path: Path) -> None:
    clock = ManualClock()
    limits = RoomNodeLimits(tick_seconds=0.02)
    with relay_server(tmp_path, clock, limits) as server:
        new = server.create_room(ttl=600)

        async def scenario() -> None:
            _alice, bob, _carol = await _three(server, new)
            clock.advance(599)
            await asyncio.sleep(0.2)
            assert _room_key(new) in server.rooms.registry.rooms
            clock.advance(2)
            await until(lambda: any(isinstance(e, RoomClosing) for e in bob.events))
            clock.advance(6)
            assert await bob.closed() == 1000
            assert server.rooms.registry.rooms == {}
            _, code = await _unknown_room_answer(server, _room_key(new))
            assert code == 4404

        asyncio.run(scenario())


def test_an_empty_room_is_wiped_after_the_grace_period(tmp_path: Path) -> None:
    clock = ManualClock()
    limits = RoomNodeLimits(tick_seconds=0.02)
    with relay_server(tmp_path, clock, limits) as server:
        new = server.create_room()

        async def scenario() -> None:
            peers = await _three(server, new)
            for peer in peers:
                peer.member.leave()
                await peer.flush()
                assert await peer.closed() == 1000
            room = server.rooms.registry.rooms[_room_key(new)]
            assert room.member_count() == 0
            clock.advance(299)
            await asyncio.sleep(0.2)
            assert _room_key(new) in server.rooms.registry.rooms
            clock.advance(2)
            await until(lambda: server.rooms.registry.rooms == {})
            _, code = await _unknown_room_answer(server, _room_key(new))
            assert code == 4404

        asyncio.run(scenario())


def test_an_invite_opens_once(tmp_path: Path) -> None:
    with relay_server(tmp_path, ManualClock()) as server:
        new = server.create_room(invites=1)

        async def scenario() -> None:
            alice = await join(server, new.creator_link, "alice")
            await until(lambda: _active(alice))
            first = await join(server, new.invite_links[0], "invited")
            await until(lambda: _active(alice, first) and alice.member.epoch == 2)
            second = await join(server, new.invite_links[0], "forwarded")
            assert await second.closed() == 4403
            assert second.member.state is MemberState.CLOSED
            assert not any(isinstance(e, RoomUnlocked) for e in second.events)

        asyncio.run(scenario())


def test_knock_an_unadmitted_joiner_gets_nothing_and_a_refused_one_is_closed(
    tmp_path: Path,
) -> None:
    with relay_server(tmp_path, ManualClock()) as server:
        new = server.create_room(knock=True)

        async def scenario() -> None:
            alice = await join(server, new.creator_link, "alice")
            await until(lambda: _active(alice))
            bob = await join(server, new.member_link, "bob")
            await until(lambda: any(isinstance(e, JoinRequested) for e in alice.events))
            await alice.say("members only")
            await until(lambda: any(isinstance(e, MessageDelivered) for e in alice.events))
            await asyncio.sleep(0.2)
            assert bob.member.state is MemberState.WAITING
            assert bob.texts() == []
            room_id = b64url_decode(_room_key(new))
            values, keys = held_values(bob.member, bob.received)
            assert read_with(values, keys, bob.received, room_id) == []
            alice.member.refuse(1)
            await alice.flush()
            assert await bob.closed() == 4403
            # Admitted: the next joiner gets in.
            carol = await join(server, new.member_link, "carol")
            await until(
                lambda: any(isinstance(e, JoinRequested) and e.index == 2 for e in alice.events)
            )
            alice.member.admit(2)
            await alice.flush()
            await until(lambda: _active(alice, carol) and carol.member.epoch == alice.member.epoch)

        asyncio.run(scenario())


async def _raw(server: RelayServer, room_key: str, **options: object) -> ClientConnection:
    return await connect(
        f"{server.ws_url}/api/v1/rooms/{room_key}",
        open_timeout=5,
        close_timeout=2,
        **options,  # type: ignore[arg-type]
    )


async def _close_code_after(socket: ClientConnection, *texts: str | bytes) -> int | None:
    """Send `texts`, read until the relay closes; the close code it sent."""
    for text in texts:
        with contextlib.suppress(ConnectionClosed):
            await socket.send(text)
    with contextlib.suppress(ConnectionClosed):
        while True:
            await asyncio.wait_for(socket.recv(), 10)
    return socket.close_code


def test_a_silent_client_is_dropped_at_the_handshake_timeout(tmp_path: Path) -> None:
    clock = ManualClock()
    with relay_server(tmp_path, clock, RoomNodeLimits(tick_seconds=0.02)) as server:
        new = server.create_room()

        async def scenario() -> None:
            socket = await _raw(server, _room_key(new))
            await socket.recv()  # the challenge; then silence
            clock.advance(9)
            await asyncio.sleep(0.2)
            assert socket.close_code is None
            clock.advance(2)
            assert await _close_code_after(socket) == 4408

        asyncio.run(scenario())


def test_a_client_that_stops_reading_is_dropped_and_the_room_goes_on(tmp_path: Path) -> None:
    limits = RoomNodeLimits(
        relay=RelayLimits(frames_per_second=1e6, frame_burst=1e6),
        queued_frames_per_connection=256,
        send_timeout_seconds=1,
    )
    with relay_server(tmp_path, ManualClock(), limits) as server:
        new = server.create_room()

        async def scenario() -> None:
            alice, bob, carol = await _three(server, new)
            assert carol.task is not None
            carol.task.cancel()  # carol stops reading; her socket buffers fill up
            big = "x" * 16000
            for _ in range(3000):
                await alice.say(big)
                if any(isinstance(e, MemberLeft) for e in bob.events):
                    break
                await asyncio.sleep(0)
            await until(lambda: any(isinstance(e, MemberLeft) for e in bob.events), within=30)
            await until(lambda: alice.member.epoch == bob.member.epoch == 4, within=30)
            assert alice.close_code is None
            await bob.say("still here")
            await until(lambda: "still here" in [t for _, t in alice.texts()])

        asyncio.run(scenario())


def test_a_reader_whose_backlog_passes_its_bytes_is_dropped_before_its_frames_do(
    tmp_path: Path,
) -> None:
    # 600 big messages stay under the 1024-frame cap, and carol reads again long before a
    # send could time out: only the byte cap can drop her.
    limits = RoomNodeLimits(
        relay=RelayLimits(frames_per_second=1e6, frame_burst=1e6),
        queued_bytes_per_connection=256 * 1024,
        send_timeout_seconds=60,
    )
    with relay_server(tmp_path, ManualClock(), limits) as server:
        new = server.create_room()

        async def scenario() -> None:
            alice, bob, carol = await _three(server, new)
            assert carol.task is not None
            carol.task.cancel()  # carol stops reading; her socket buffers fill up
            big = "x" * 16000
            for _ in range(600):  # about 14 MB of frames for carol
                await alice.say(big)
                await asyncio.sleep(0)
            carol.task = asyncio.create_task(carol.run())  # she reads again
            assert await carol.closed(within=30) == 4408
            await until(lambda: any(isinstance(e, MemberLeft) for e in bob.events), within=30)
            await until(lambda: alice.member.epoch == bob.member.epoch == 4, within=30)
            assert alice.close_code is None
            await bob.say("still here")
            await until(lambda: "still here" in [t for _, t in alice.texts()])

        asyncio.run(scenario())


def test_frame_limits_and_protocol_errors_close_with_their_codes(tmp_path: Path) -> None:
    limits = RoomNodeLimits(relay=RelayLimits(frames_per_second=1, frame_burst=5))
    with relay_server(tmp_path, ManualClock(), limits) as server:
        new = server.create_room()
        key = _room_key(new)

        async def scenario() -> None:
            too_big = '{"t":"leave","epoch":1,"sealed_seeds":"' + "A" * 70000 + '"}'
            assert await _close_code_after(await _raw(server, key), too_big) == 4400
            assert await _close_code_after(await _raw(server, key), "not json") == 4400
            assert await _close_code_after(await _raw(server, key), b"\x00binary") == 4400
            early = '{"t":"leave"}'  # legal frame, wrong state
            assert await _close_code_after(await _raw(server, key), early) == 4400
            bad_proof = (
                '{"t":"prove","kind":"link","key":"'
                + new.creation.join_verifier
                + '","sig":"'
                + "A" * 86
                + '"}'
            )
            assert await _close_code_after(await _raw(server, key), bad_proof) == 4403
            flood = ["x"] * 7  # over the burst before any is even parsed as wrong
            socket = await _raw(server, key)
            await socket.recv()
            codes = await _close_code_after(socket, *flood)
            assert codes in (4400, 4429)
            # the rate limit proper: valid-looking frames faster than the bucket
            alice = await join(server, new.creator_link, "alice")
            await until(lambda: _active(alice))
            for n in range(10):
                await alice.say(f"m{n}")
            assert await alice.closed() == 4429

        asyncio.run(scenario())


def test_members_per_room_connections_per_client_and_room_caps(tmp_path: Path) -> None:
    limits = RoomNodeLimits(
        relay=RelayLimits(max_members=2),
        connections_per_client=3,
        rooms_per_client_per_hour=2,
        max_rooms=3,
    )
    with relay_server(tmp_path, ManualClock(), limits) as server:
        new = server.create_room("one")

        async def scenario() -> None:
            alice = await join(server, new.creator_link, "alice")
            bob = await join(server, new.member_link, "bob")
            await until(lambda: _active(alice, bob) and alice.member.epoch == 2)
            carol = await join(server, new.member_link, "carol")
            assert await carol.closed() == 4429
            assert any(isinstance(e, RelayError) and e.code == "full" for e in carol.events)
            await until(lambda: server.rooms.registry.open_connections() == 2)  # carol's is gone
            extra = await _raw(server, _room_key(new))
            await extra.recv()  # third connection of this client: allowed
            fourth = await _raw(server, _room_key(new))
            assert await _close_code_after(fourth) == 4429

        asyncio.run(scenario())
        server.create_room("two")
        third = make_room(server.url, SeededRandom("three"), name="x")
        assert server.post_creation(third).status_code == 429


def test_room_creation_refusals(tmp_path: Path) -> None:
    with relay_server(tmp_path, ManualClock(), RoomNodeLimits(max_rooms=1), pow_bits=8) as server:
        new = server.create_room("one")
        assert server.post_creation(new).status_code == 409
        other = make_room(server.url, SeededRandom("other"), name="x")
        assert server.post_creation(other).status_code == 503
        assert server.post_creation(other, nonce=-1).status_code == 422
        assert server.post_creation(other, extra=1).status_code == 422
        # a challenge bound to another room id is refused
        challenge = httpx.post(
            f"{server.url}/api/v1/rooms/{new.creation.room_id}/challenge"
        ).json()["challenge"]
        body = msgspec.to_builtins(other.creation) | {"challenge": challenge, "nonce": 0}
        assert httpx.post(f"{server.url}/api/v1/rooms", json=body).status_code == 403
        # a secrets challenge never pays for a room
        assert httpx.post(f"{server.url}/api/v1/rooms/short/challenge").status_code == 422
        answer = httpx.post(
            f"{server.url}/api/v1/rooms",
            content=b"{}",
            headers={"content-type": "text/plain"},
        )
        assert answer.status_code == 422


def test_cross_site_websockets_are_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with relay_server(tmp_path, ManualClock()) as server:
        new = server.create_room()

        async def scenario() -> None:
            with pytest.raises(InvalidStatus) as refused:
                await _raw(server, _room_key(new), origin="https://evil.example")
            assert refused.value.response.status_code == 403
            # An Origin that is no URL at all is another site's too (not a 500).
            with pytest.raises(InvalidStatus) as malformed:
                await _raw(server, _room_key(new), origin="http://[")
            assert malformed.value.response.status_code == 403
            # Refused as cross-site, not as an error of ours.
            assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
            same_site = await _raw(server, _room_key(new), origin=server.url)
            assert '"challenge"' in str(await same_site.recv())
            await same_site.close()

        asyncio.run(scenario())


def test_logs_at_debug_and_the_data_directory_hold_nothing_of_a_room(tmp_path: Path) -> None:
    process = ServerProcess(tmp_path / "data", tmp_path / "server.log").start()
    try:
        server = RelayServer(process.url, None, None)  # type: ignore[arg-type]
        new = server.create_room(invites=1)

        async def scenario() -> None:
            peers = await _three(server, new)
            for peer in peers:
                await peer.say(f"whisper from {peer.member.index}")
            await until(lambda: all(len(p.texts()) == 2 for p in peers))
            peers[0].member.end()
            await peers[0].flush()
            for peer in peers:
                await peer.closed()
            frames.extend(t for p in peers for t in p.received + p.sent)

        frames: list[str] = []
        asyncio.run(scenario())
    finally:
        process.stop()
    room_key = _room_key(new)
    secrets_ = [room_key, b64url_decode(room_key).hex(), "Plans", "whisper"]
    for text in frames:  # every ciphertext, signature and key that went over the wire
        document = json.loads(text)
        secrets_ += [v for v in document.values() if isinstance(v, str) and len(v) >= 43]
    logged = process.output()
    assert '"route":"/api/v1/rooms/{room_id}"' in logged  # it logged at debug, by template
    # No frame is logged at all (the redactor would hide long tokens, not a frame's shape).
    assert "TEXT '" not in logged
    assert '\\"t\\":' not in logged
    on_disk = b"".join(
        path.read_bytes() for path in (tmp_path / "data").rglob("*") if path.is_file()
    )
    for secret in secrets_:
        assert secret not in logged
        assert secret.encode() not in on_disk
