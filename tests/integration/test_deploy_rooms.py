"""deploy/ for rooms on several nodes (issue 22): the room Redis from
deploy/redis/atopos-rooms.conf writes nothing to disk, and behind Caddy from
deploy/Caddyfile, which balances WebSockets across two nodes, one room's members land on
both nodes and talk through the room Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
import redis
from websockets.asyncio.client import connect

from atopos.crypto import pow as proof_of_work
from atopos.protocol.room_creation import NewRoom, make_room
from atopos.protocol.room_link import RoomLink
from atopos.protocol.room_member import MemberState, RoomMember
from atopos.protocol.room_relay_snapshot import load_room
from atopos.server.rooms.redis_relays import state_key_of
from tests.deploy_servers import DEPLOY, CaddyServer, DeployedRedis, read_env_file
from tests.redis_servers import write_key_file
from tests.room_relay_server import Peer, until
from tests.rooms_support import SeededRandom
from tests.servers import ServerProcess
from tests.tls_certs import TestCa

pytestmark = pytest.mark.skipif(
    shutil.which("caddy") is None or shutil.which("redis-server") is None,
    reason="needs caddy and redis-server",
)


def _config(server: DeployedRedis, name: str) -> str:
    with server.client() as client:
        return str(client.config_get(name)[name])


def test_the_room_redis_config_writes_nothing_to_disk(tmp_path: Path) -> None:
    server = DeployedRedis("atopos-rooms", tmp_path).start()
    try:
        assert _config(server, "appendonly") == "no"
        assert _config(server, "save") == ""
        assert _config(server, "maxmemory-policy") == "noeviction"
        with server.client() as client:
            client.hset("atopos:room:{x}", mapping={"v": "1", "s": "state"})
            client.execute_command("SPUBLISH", "atopos:room:{x}:frames", b"batch")
    finally:
        server.stop()
    assert list(server.data_dir.iterdir()) == []


@contextlib.contextmanager
def _deployment(tmp: Path) -> Iterator[tuple[CaddyServer, DeployedRedis, TestCa]]:
    rooms = DeployedRedis("atopos-rooms", tmp / "redis-rooms").start()
    nodes: list[ServerProcess] = []
    caddy: CaddyServer | None = None
    try:
        env = read_env_file(DEPLOY / "atopos.env")
        for name in ("ATOPOS_LOG_LEVEL", "ATOPOS_STORAGE", "ATOPOS_RATE_LIMIT_STORAGE"):
            env.pop(name)  # secrets on SQLite, limits off: this test is about rooms
        # The nodes share their key (a challenge from one is checked by the other).
        key_file = write_key_file(tmp / "atopos.key", os.urandom(32))
        env.update(ATOPOS_ROOM_REDIS_URL=rooms.url, ATOPOS_KEY_FILE=str(key_file))
        for name in ("a", "b"):
            nodes.append(ServerProcess(data_dir=tmp / name, log_path=tmp / f"{name}.log", env=env))
            nodes[-1].start()
        ca = TestCa.create(tmp / "tls")
        leaf = ca.issue("server")
        caddy = CaddyServer(
            tmp / "caddy",
            upstreams=[f"127.0.0.1:{node.port}" for node in nodes],
            cert_path=leaf.cert_path,
            key_path=leaf.key_path,
            ca_path=ca.cert_path,
        ).start()
        yield caddy, rooms, ca
    finally:
        if caddy is not None:
            caddy.stop()
        for node in nodes:
            node.stop()
        rooms.stop()


def _create(url: str, verify: ssl.SSLContext) -> NewRoom:
    new = make_room(url, SeededRandom("deployed room"), name="Plans")
    room_id = new.creation.room_id
    with httpx.Client(verify=verify, timeout=10) as client:
        challenge = client.post(f"{url}/api/v1/rooms/{room_id}/challenge").json()
        nonce = proof_of_work.solve(challenge["challenge"].encode(), challenge["bits"])
        body = msgspec.to_builtins(new.creation) | {
            "challenge": challenge["challenge"],
            "nonce": nonce,
        }
        answer = client.post(f"{url}/api/v1/rooms", json=body)
    assert answer.status_code == 201, answer.text
    return new


async def _join(url: str, verify: ssl.SSLContext, link: RoomLink, name: str) -> Peer:
    room_id = link.room_path.rsplit("/", 1)[1]
    socket = await connect(
        f"{url.replace('https://', 'wss://')}/api/v1/rooms/{room_id}",
        ssl=verify,
        open_timeout=5,
        close_timeout=2,
    )
    peer = Peer(RoomMember(link, name, SeededRandom(f"member/{name}")), socket)
    peer.task = asyncio.create_task(peer.run())
    return peer


def test_caddy_spreads_one_rooms_members_over_both_nodes(tmp_path: Path) -> None:
    with _deployment(tmp_path) as (caddy, rooms, ca):
        verify = ssl.create_default_context(cafile=str(ca.cert_path))
        new = _create(caddy.url, verify)

        async def scenario() -> None:
            peers: list[Peer] = []
            for n, link in enumerate([new.creator_link] + [new.member_link] * 3):
                peers.append(await _join(caddy.url, verify, link, f"member {n}"))
                await until(
                    lambda: (
                        all(p.member.state is MemberState.ACTIVE for p in peers)
                        and len({p.member.epoch for p in peers}) == 1
                    ),
                    within=20,
                )
            with rooms.client() as client:
                state = load_room(client.hget(state_key_of(new.creation.room_id), "s"))  # type: ignore[arg-type]
            # A connection id starts with its node's tag: the members sit on both nodes.
            assert len({connection >> 32 for connection in state.connections}) == 2
            for peer in peers:
                await peer.say(f"hello from {peer.member.index}")
            await until(lambda: all(len(p.texts()) == 3 for p in peers), within=20)
            assert len({p.member.safety_code for p in peers}) == 1
            assert [p.errors for p in peers] == [[]] * 4

        asyncio.run(scenario())


def test_the_room_redis_has_its_own_password_in_the_install_steps() -> None:
    env = read_env_file(DEPLOY / "atopos.env")
    assert env["ATOPOS_ROOM_REDIS_URL"] == "redis://:ROOMS_PASSWORD@127.0.0.1:6382/0"
    conf = (DEPLOY / "redis" / "atopos-rooms.conf").read_text()
    assert "\ninclude /etc/redis/redis-atopos-rooms.password.conf\n" in conf
    guide = (DEPLOY.parent / "docs" / "operations.md").read_text()
    assert "for name in durable ephemeral rooms; do" in guide
    assert "ROOMS_PASSWORD" in guide


def test_the_room_redis_refuses_a_client_without_its_password(tmp_path: Path) -> None:
    server = DeployedRedis("atopos-rooms", tmp_path).start()
    try:
        for password in ("", "not-the-password"):
            with (
                server.client(password=password) as client,
                pytest.raises((redis.AuthenticationError, redis.ResponseError)),
            ):
                client.hget("atopos:room:{x}", "s")
    finally:
        server.stop()
