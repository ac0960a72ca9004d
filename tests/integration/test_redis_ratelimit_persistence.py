"""Rate-limit counters never on a Redis that persists (storage/ephemeral_redis.py), on
real `redis-server` processes: a node refuses to start, with one sentence and exit code 2,
when its counters would go to a Redis with an AOF or RDB snapshots (by default the
storage's durable Redis), or to one that will not answer CONFIG; it starts on a Redis
without persistence, with the opt-out, or with limits off; and a rate-limit Redis that is
down at start is checked when it answers, before the first counter is written."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from atopos.errors import Unavailable
from atopos.server.ratelimit import RateLimits, rate_limit_storage
from atopos.storage.ephemeral_redis import check_at_start
from tests.api_client import OCTETS, access_params, create, envelope
from tests.redis_servers import RedisClusterServers, RedisServer
from tests.servers import ATOPOS, ManualClock, ServerProcess, free_port

FIX = (
    "point ATOPOS_RATE_LIMIT_STORAGE at a Redis without persistence "
    "(deploy/redis/atopos-ephemeral.conf) or set it to memory:// for per-node limits"
)
OPT_OUT = "ATOPOS_RATE_LIMIT_STORAGE_PERSISTENT_OK"
OPT_OUT_WARNING = '"rate-limit counters may be written to disk'
PASSWORD = "limits-password-7d1e"
REFUSED_LATER = '"rate-limit redis may write counters to disk'


def serve_expecting_refusal(
    tmp_path: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`atopos serve` with rate limits on; it must exit by itself (a timeout fails the test)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ATOPOS_")}
    return subprocess.run(
        [ATOPOS, "serve", "--port", str(free_port()), "--data", str(tmp_path / "data")],
        env={**base, "ATOPOS_RATE_LIMIT": "60", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_refused(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit code 2 and exactly one line on stderr, holding each fragment; no traceback."""
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def create_statuses(url: str, count: int) -> list[int]:
    body, _ = envelope(b"counted")
    with httpx.Client(timeout=30) as client:
        return [
            client.post(
                f"{url}/api/v1/secrets", params=access_params(body), content=body, headers=OCTETS
            ).status_code
            for _ in range(count)
        ]


@pytest.fixture(scope="module")
def ephemeral_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    cluster = RedisClusterServers(
        tmp_path_factory.mktemp("redis-cluster-ephemeral"), appendonly=False
    ).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.parametrize("storage", ["redis_url", "redis_cluster_url"], ids=["redis", "cluster"])
def test_a_node_refuses_to_start_with_its_counters_on_the_durable_storage_by_default(
    tmp_path: Path, storage: str, request: pytest.FixtureRequest
) -> None:
    """ATOPOS_RATE_LIMIT_STORAGE unset: the counters would go to the storage's Redis, which
    keeps an AOF (deploy/'s durable config; every master of the Cluster)."""
    url = request.getfixturevalue(storage)
    result = serve_expecting_refusal(tmp_path, {"ATOPOS_STORAGE": url})
    assert_refused(
        result, "The storage's Redis", "ATOPOS_RATE_LIMIT_STORAGE is unset", "appendonly yes", FIX
    )


def test_a_node_refuses_a_rate_limit_redis_that_takes_snapshots(tmp_path: Path) -> None:
    """No AOF, but RDB snapshot points: the counters would reach disk at the next one."""
    snapshots = RedisServer(tmp_path / "redis", appendonly=False, save="3600 1").start()
    try:
        result = serve_expecting_refusal(tmp_path, {"ATOPOS_RATE_LIMIT_STORAGE": snapshots.url})
    finally:
        snapshots.stop()
    assert_refused(result, "The Redis of ATOPOS_RATE_LIMIT_STORAGE", 'save "3600 1"', FIX)


def test_a_node_refuses_a_rate_limit_redis_that_denies_config(
    tmp_path: Path, redis_ephemeral: RedisServer, redis_ephemeral_url: str
) -> None:
    """An ACL user without CONFIG (as on managed services): whether the Redis persists
    cannot be told, so the node does not start; the sentence names the opt-out too."""
    with redis_ephemeral.client() as client:
        client.execute_command(
            "ACL", "SETUSER", "limits", "on", f">{PASSWORD}", "~*", "+@all", "-config"
        )
    try:
        url = f"redis://limits:{PASSWORD}@127.0.0.1:{redis_ephemeral.port}/0"
        result = serve_expecting_refusal(tmp_path, {"ATOPOS_RATE_LIMIT_STORAGE": url})
    finally:
        with redis_ephemeral.client() as client:
            client.execute_command("ACL", "DELUSER", "limits")
    line = assert_refused(result, "does not answer CONFIG GET", FIX, f"{OPT_OUT}=1")
    assert PASSWORD not in line


def test_every_node_of_a_cluster_is_asked(
    tmp_path: Path, redis_url: str, ephemeral_cluster: RedisClusterServers
) -> None:
    """A Cluster without persistence is fine, but one master taking snapshots is enough
    to refuse: the counters of the identifiers in its slots would reach its disk."""
    ephemeral_cluster.flush()
    env = {"ATOPOS_STORAGE": redis_url, "ATOPOS_RATE_LIMIT_STORAGE": ephemeral_cluster.url}
    with ephemeral_cluster.nodes[-1].client() as last:
        last.config_set("save", "900 1")
        try:
            result = serve_expecting_refusal(tmp_path, env)
        finally:
            last.config_set("save", "")
    assert_refused(result, 'save "900 1"', FIX)

    node = ServerProcess(
        tmp_path / "node", tmp_path / "node.log", env={**env, "ATOPOS_RATE_LIMIT": "3"}
    ).start()
    try:
        assert create_statuses(node.url, 4) == [201, 201, 201, 429]
    finally:
        node.stop()
    assert any(server.limit_keys() for server in ephemeral_cluster.nodes)


def test_the_opt_out_starts_on_a_persistent_redis_with_one_warning(
    tmp_path: Path, redis_url: str, redis_server: RedisServer
) -> None:
    node = ServerProcess(
        tmp_path / "node",
        tmp_path / "node.log",
        env={"ATOPOS_STORAGE": redis_url, "ATOPOS_RATE_LIMIT": "3", OPT_OUT: "1"},
    ).start()
    try:
        assert create_statuses(node.url, 4) == [201, 201, 201, 429]
    finally:
        node.stop()
    assert redis_server.limit_keys(), "the counters went where the operator accepted them"
    output = node.output()
    assert output.count(OPT_OUT_WARNING) == 1, output
    assert "Traceback" not in output


def test_with_limits_off_nothing_is_checked_and_nothing_counted_in_redis(
    tmp_path: Path, redis_url: str, redis_server: RedisServer
) -> None:
    """ATOPOS_RATE_LIMIT=0: the durable Redis is fine, because no counter goes to Redis;
    not even the failures that raise the proof-of-work price, which then count per node."""
    node = ServerProcess(
        tmp_path / "node", tmp_path / "node.log", env={"ATOPOS_STORAGE": redis_url}
    ).start()
    try:
        assert create_statuses(node.url, 1) == [201]
        with httpx.Client(timeout=30) as client:
            sid = create(client, node.url, envelope(b"failures")[0])["id"]
            bad = client.post(
                f"{node.url}/api/v1/secrets/{sid}/ticket", json={"challenge": "x", "nonce": 0}
            )
            assert bad.status_code == 403
    finally:
        node.stop()
    assert not redis_server.limit_keys()
    assert OPT_OUT_WARNING not in node.output()


@pytest.mark.parametrize("persists", [False, True], ids=["ephemeral", "persistent"])
def test_a_rate_limit_redis_down_at_start_is_checked_when_it_answers(
    tmp_path: Path, redis_url: str, persists: bool
) -> None:
    """The node starts anyway (no crash loop for an outage) and answers 503 on the limited
    routes; once the Redis answers, it is checked before the first counter is written: one
    without persistence gets the counters, one with persistence none of them (503, and one
    error line)."""
    later = RedisServer(tmp_path / "later", port=free_port(), appendonly=persists)
    node = ServerProcess(
        tmp_path / "node",
        tmp_path / "node.log",
        env={
            "ATOPOS_STORAGE": redis_url,
            "ATOPOS_RATE_LIMIT": "100",
            "ATOPOS_RATE_LIMIT_STORAGE": later.url,
        },
    ).start()
    try:
        assert create_statuses(node.url, 2) == [503, 503]
        later.start()
        assert create_statuses(node.url, 3) == ([503] * 3 if persists else [201] * 3)
        assert bool(later.limit_keys()) is not persists
    finally:
        node.stop()
        later.stop()
    output = node.output()
    assert output.count('"rate-limit storage unreachable at start') == 1, output
    assert output.count(REFUSED_LATER) == (1 if persists else 0), output
    assert "Traceback" not in output


def test_a_rate_limit_redis_is_checked_again_after_an_outage(
    tmp_path: Path, redis_url: str
) -> None:
    """The Redis comes back from an outage as another one, with persistence: the node asks
    again before it writes a counter there, and refuses to count."""
    ephemeral = RedisServer.ephemeral(tmp_path / "ephemeral").start()
    node = ServerProcess(
        tmp_path / "node",
        tmp_path / "node.log",
        env={
            "ATOPOS_STORAGE": redis_url,
            "ATOPOS_RATE_LIMIT": "100",
            "ATOPOS_RATE_LIMIT_STORAGE": ephemeral.url,
        },
    ).start()
    durable = RedisServer(tmp_path / "durable", port=ephemeral.port)
    try:
        assert create_statuses(node.url, 1) == [201]
        ephemeral.stop()
        assert create_statuses(node.url, 1) == [503]
        durable.start()
        assert create_statuses(node.url, 2) == [503, 503]
        assert not durable.limit_keys()
    finally:
        node.stop()
        ephemeral.stop()
        durable.stop()
    output = node.output()
    assert output.count(REFUSED_LATER) == 1, output
    assert "Traceback" not in output


def switch_to_aof(server: RedisServer) -> None:
    """`CONFIG SET appendonly yes`, then wait until Redis wrote its first AOF (it would not
    shut down before)."""
    with server.client() as client:
        client.config_set("appendonly", "yes")
        deadline = time.monotonic() + 30
        while client.info("persistence")["aof_rewrite_in_progress"] or not client.info(
            "persistence"
        ).get("aof_enabled"):
            assert time.monotonic() < deadline, "redis did not switch to an AOF"
            time.sleep(0.01)  # polling interval, not a wait for readiness


def test_a_rate_limit_redis_switched_to_persistence_at_run_time_gets_no_more_counters(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 19: an operator runs `CONFIG SET appendonly yes` on the counters' Redis while the
    node serves. Within the recheck interval (on the node's clock) the node asks again, then
    writes no counter there: every limited call fails closed (503), with one error line."""
    ephemeral = RedisServer.ephemeral(tmp_path / "ephemeral").start()
    clock = ManualClock()
    try:
        check = check_at_start(ephemeral.url, is_default=False, clock=clock, recheck_every=60)
        limits = RateLimits({"create": 100}, rate_limit_storage(ephemeral.url), check, clock=clock)

        async def scenario() -> None:
            await limits.hit("create", "before")
            switch_to_aof(ephemeral)
            clock.advance(30)
            await limits.hit("create", "within")  # not asked again yet
            clock.advance(30)
            for call in (
                limits.hit("create", "after"),
                limits.record_failure("after"),
                limits.extra_bits("after"),
                limits.hit("create", "before"),
            ):
                with pytest.raises(Unavailable):
                    await call
            clock.advance(120)  # and it stays so, until the node is restarted
            with pytest.raises(Unavailable):
                await limits.hit("create", "later")

        with caplog.at_level(logging.WARNING, logger="atopos.server"):
            asyncio.run(scenario())
        keys = b" ".join(ephemeral.limit_keys())
        assert b"/before/" in keys
        assert b"/within/" in keys
        assert b"/after/" not in keys
        assert b"/later/" not in keys
    finally:
        ephemeral.stop()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, caplog.text
    assert errors[0].getMessage().startswith(REFUSED_LATER.strip('"'))
    assert getattr(errors[0], "reason", None) == "appendonly yes"
