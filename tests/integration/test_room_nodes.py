"""Rooms across two `atopos serve` nodes on one room Redis (issue 22): members on both nodes
talk both ways with one safety code; a node killed with SIGKILL loses only its own members
and the others go on in a new epoch; a room Redis restart ends every room cleanly and the
nodes recover alone; afterwards Redis holds no key of the rooms and its data directory no
file written during the test. Real redis-server processes and real nodes on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from atopos.clock import SystemClock
from atopos.protocol.room_creation import NewRoom
from atopos.protocol.room_events import MemberLeft, RelayError
from atopos.protocol.room_member import MemberState
from tests.redis_servers import RedisClusterServers, RedisServer
from tests.room_relay_server import Peer, RelayServer, join, until
from tests.servers import ATOPOS, ServerProcess, free_port


def _active(*peers: Peer) -> bool:
    return all(p.member.state is MemberState.ACTIVE for p in peers)


def _same_epoch(*peers: Peer) -> bool:
    return _active(*peers) and len({p.member.epoch for p in peers}) == 1


def _relay(process: ServerProcess) -> RelayServer:
    """A handle for the test helpers (they need its URL only)."""
    return RelayServer(process.url, None, SystemClock())  # type: ignore[arg-type]


@contextlib.contextmanager
def _nodes(tmp_path: Path, room_redis_url: str, **env: str) -> Iterator[list[ServerProcess]]:
    nodes = [
        ServerProcess(
            data_dir=tmp_path / name,
            log_path=tmp_path / f"{name}.log",
            env={"ATOPOS_ROOM_REDIS_URL": room_redis_url, **env},
        )
        for name in ("a", "b")
    ]
    try:
        for node in nodes:
            node.start()
        yield nodes
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture
def room_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A room Redis of this test alone (it is restarted and its directory inspected)."""
    server = RedisServer.ephemeral(tmp_path / "room-redis").start()
    try:
        yield server
    finally:
        server.stop()


def _log_tail(node: ServerProcess, lines: int = 30) -> str:
    """The last lines a node logged above debug level (redis-py's debug lines would fill it)."""
    said = [line for line in node.output().splitlines() if '"level":"debug"' not in line]
    return "\n".join(said[-lines:])


def _room_keys(client: object, room_id: str) -> list[bytes]:
    return list(client.scan_iter(match=f"*{room_id}*"))  # type: ignore[attr-defined]


def _files_written_since(directory: Path, since: float) -> list[str]:
    """Files in a Redis data directory modified since `since`, but its log file (a Redis
    that persists would leave dump.rdb or appendonly files here)."""
    return sorted(
        str(path.relative_to(directory))
        for path in directory.rglob("*")
        if path.is_file() and path.name != "redis.log" and path.stat().st_mtime >= since
    )


async def _talk_across(a: RelayServer, b: RelayServer, new: NewRoom) -> list[Peer]:
    """alice on node a, bob and carol on node b, all in one epoch, then a message each."""
    alice = await join(a, new.creator_link, "alice")
    await until(lambda: _active(alice))
    bob = await join(b, new.member_link, "bob")
    await until(lambda: _same_epoch(alice, bob))
    carol = await join(b, new.member_link, "carol")
    peers = [alice, bob, carol]
    await until(lambda: _same_epoch(*peers))
    await alice.say("from node a")
    await bob.say("from node b")
    await until(lambda: len(carol.texts()) == 2 and len(alice.texts()) == 1)
    await until(lambda: len(bob.texts()) == 1)
    return peers


def test_members_on_two_nodes_talk_both_ways_and_the_room_leaves_nothing(
    tmp_path: Path, room_redis: RedisServer
) -> None:
    started = time.time()
    with _nodes(tmp_path, room_redis.url) as (node_a, node_b):
        a, b = _relay(node_a), _relay(node_b)
        new = a.create_room()
        room_id = new.creation.room_id

        async def scenario() -> None:
            alice, bob, carol = await _talk_across(a, b, new)
            assert [t for _, t in alice.texts()] == ["from node b"]
            assert [t for _, t in bob.texts()] == ["from node a"]
            assert sorted(t for _, t in carol.texts()) == ["from node a", "from node b"]
            codes = {p.member.safety_code for p in (alice, bob, carol)}
            assert len(codes) == 1
            assert None not in codes
            assert [p.errors for p in (alice, bob, carol)] == [[], [], []]
            with room_redis.client() as client:
                assert _room_keys(client, room_id) != []  # the state is in the room Redis
            alice.member.end()
            await alice.flush()
            for peer in (alice, bob, carol):
                assert await peer.closed(within=20) == 1000
                assert peer.member.state is MemberState.CLOSED

        asyncio.run(scenario())
        with room_redis.client() as client:
            assert _room_keys(client, room_id) == []
            assert client.zrange("atopos:room-index", 0, -1) == []
    assert _files_written_since(room_redis.directory, started) == []
    log = (room_redis.directory / "redis.log").read_text()
    assert "DB saved" not in log
    assert "Background saving" not in log


def test_a_node_killed_loses_only_its_members_and_the_others_go_on(
    tmp_path: Path, room_redis: RedisServer
) -> None:
    with _nodes(tmp_path, room_redis.url) as (node_a, node_b):
        a, b = _relay(node_a), _relay(node_b)
        new = a.create_room()

        async def scenario() -> None:
            alice, bob, carol = await _talk_across(a, b, new)
            dave = await join(a, new.member_link, "dave")
            await until(lambda: _same_epoch(alice, bob, carol, dave))
            epoch = alice.member.epoch
            killed_at = time.monotonic()
            node_b.kill9()
            await until(
                lambda: (
                    sum(isinstance(e, MemberLeft) for e in alice.events) == 2
                    and _same_epoch(alice, dave)
                    and alice.member.epoch > epoch
                ),
                within=20,
            )
            seen_after = time.monotonic() - killed_at
            assert seen_after < 10, seen_after
            await alice.say("still here")
            await dave.say("me too")
            await until(lambda: [t for _, t in dave.texts()][-1:] == ["still here"])
            await until(lambda: [t for _, t in alice.texts()][-1:] == ["me too"])
            assert alice.member.safety_code == dave.member.safety_code
            assert [p.errors for p in (alice, dave)] == [[], []]

        asyncio.run(scenario())


def test_a_room_redis_restart_ends_every_room_and_the_nodes_recover(
    tmp_path: Path, room_redis: RedisServer
) -> None:
    started = time.time()
    with _nodes(tmp_path, room_redis.url) as (node_a, node_b):
        a, b = _relay(node_a), _relay(node_b)
        new = a.create_room()
        room_id = new.creation.room_id

        async def scenario() -> None:
            peers = await _talk_across(a, b, new)
            room_redis.kill9()
            for peer in peers:
                assert await peer.closed(within=15) == 4404
                assert peer.member.state is MemberState.CLOSED
                errors = [e for e in peer.events if isinstance(e, RelayError)]
                assert [e.code for e in errors] == ["ended"]
            # Down: a new connection is refused at the handshake, with a sentence.
            for node in (a, b):
                with pytest.raises(InvalidStatus) as refused:
                    async with connect(f"{node.ws_url}/api/v1/rooms/{room_id}", open_timeout=5):
                        pass
                assert refused.value.response.status_code == 503
                assert b"Rooms are unavailable" in refused.value.response.body
            room_redis.start()
            for node in (node_a, node_b):
                await until(lambda n=node: _healthy(n), within=20)  # type: ignore[misc]
            with room_redis.client() as client:
                assert _room_keys(client, room_id) == []
            # Recovered alone: a new room works across both nodes again.
            again = a.create_room("again")
            await _talk_across(a, b, again)

        asyncio.run(scenario())
    assert _files_written_since(room_redis.directory, started) == []


def _healthy(node: ServerProcess) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{node.url}/healthz", timeout=1).status_code == 200
    return False


def test_members_on_two_nodes_talk_through_a_redis_cluster(
    tmp_path: Path, redis_cluster_ephemeral: RedisClusterServers, redis_cluster_ephemeral_url: str
) -> None:
    started = time.time()
    with _nodes(tmp_path, redis_cluster_ephemeral_url) as (node_a, node_b):
        a, b = _relay(node_a), _relay(node_b)
        new = b.create_room()
        room_id = new.creation.room_id

        async def scenario() -> None:
            alice, bob, carol = await _talk_across(a, b, new)
            codes = {p.member.safety_code for p in (alice, bob, carol)}
            assert len(codes) == 1
            assert None not in codes
            alice.member.end()
            await alice.flush()
            for peer in (alice, bob, carol):
                assert await peer.closed(within=20) == 1000

        asyncio.run(scenario())
    for server in redis_cluster_ephemeral.nodes:
        with server.client() as client:
            assert _room_keys(client, room_id) == []
        written = _files_written_since(server.directory, started)
        assert [name for name in written if name != "nodes.conf"] == []


def test_a_node_refuses_a_room_redis_that_persists(tmp_path: Path) -> None:
    durable = RedisServer(tmp_path / "durable").start()
    try:
        done = subprocess.run(
            [ATOPOS, "serve", "--port", str(free_port()), "--data", str(tmp_path / "data")],
            env={"ATOPOS_ROOM_REDIS_URL": durable.url, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        durable.stop()
    assert done.returncode == 2
    assert "The Redis of ATOPOS_ROOM_REDIS_URL writes to disk (appendonly yes)" in done.stderr
    assert done.stderr.count("\n") <= 2, done.stderr


def test_a_node_stopped_lets_its_members_leave_and_the_others_go_on(
    tmp_path: Path, room_redis: RedisServer
) -> None:
    with _nodes(tmp_path, room_redis.url) as (node_a, node_b):
        a, b = _relay(node_a), _relay(node_b)
        new = a.create_room()

        async def scenario() -> None:
            alice, bob, carol = await _talk_across(a, b, new)
            epoch = alice.member.epoch
            # SIGTERM, a restart's first half; in a thread, so that the members' clients
            # go on reading (and answer the closing handshake) while the node stops.
            stopping = time.monotonic()
            await asyncio.to_thread(node_b.stop)
            stopped = time.monotonic()
            for peer in (bob, carol):
                assert await peer.closed(within=20) == 1012  # "service restart"

            def explain() -> str:
                return (
                    f"node b stopped in {stopped - stopping:.1f} s; alice: {alice.member.state}, "
                    f"epoch {alice.member.epoch} (was {epoch}), errors {alice.errors}, "
                    f"events {[type(e).__name__ for e in alice.events]}\n"
                    f"--- node a ---\n{_log_tail(node_a)}\n--- node b ---\n{_log_tail(node_b)}"
                )

            await until(
                lambda: (
                    sum(isinstance(e, MemberLeft) for e in alice.events) == 2
                    and alice.member.epoch > epoch
                ),
                within=10,
                explain=explain,
            )
            await alice.say("alone now")
            await until(lambda: [t for _, t in alice.texts()] == ["from node b"])
            assert alice.errors == []

        asyncio.run(scenario())


def test_a_room_redis_back_with_persistence_is_refused(
    tmp_path: Path, room_redis: RedisServer
) -> None:
    with _nodes(tmp_path, room_redis.url) as (node_a, node_b):
        a = _relay(node_a)
        new = a.create_room()
        room_id = new.creation.room_id
        room_redis.kill9()
        durable = RedisServer(tmp_path / "durable", port=room_redis.port).start()
        try:

            async def scenario() -> None:
                await until(lambda: "room redis lost" in node_a.output(), within=15)
                await asyncio.sleep(3)  # a few heartbeats: each asks again, each is refused
                for node in (a, _relay(node_b)):
                    with pytest.raises(InvalidStatus) as refused:
                        async with connect(f"{node.ws_url}/api/v1/rooms/{room_id}"):
                            pass
                    assert refused.value.response.status_code == 503
                assert not _healthy(node_a)
                with durable.client() as client:
                    assert list(client.scan_iter(match="atopos:*")) == []

            asyncio.run(scenario())
        finally:
            durable.stop()
    assert "room redis may write room state to disk" in node_a.output()


def test_cli_members_on_two_nodes_talk_and_exit_3_when_the_room_redis_restarts(
    tmp_path: Path, room_redis: RedisServer
) -> None:
    from tests.integration.test_room_cli import ScriptClient, create_room, epoch_with

    home = tmp_path / "home"
    home.mkdir()
    with _nodes(tmp_path, room_redis.url) as (node_a, node_b):
        links = create_room(home, node_a.url, "--name", "Plans")
        # The links name node a; bob's, rewritten, reaches node b with the same room.
        ann = ScriptClient(home, links["Creator link"], "ann")
        ann.wait_for(epoch_with(1))
        bob = ScriptClient(home, links["Room link"].replace(node_a.url, node_b.url), "bob")
        ann_code = ann.wait_for(epoch_with(2))["safety_code"]
        bob_code = bob.wait_for(epoch_with(2))["safety_code"]
        assert ann_code == bob_code
        ann.say("from node a")
        bob.say("from node b")
        ann.wait_for(lambda e: e.get("text") == "from node b")
        bob.wait_for(lambda e: e.get("text") == "from node a")
        room_redis.kill9()
        room_redis.start()
        assert ann.process.wait(timeout=30) == 3
        assert bob.process.wait(timeout=30) == 3
