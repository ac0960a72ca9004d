"""A clock stepped back must not reopen a replay (docs/protocol/access.md, "Clock steps").

A sweep that forgets redeemed ticket ids up to S stores S as the SQLite store's sweep floor;
the store refuses to record an id at or below it, and the node decides at
`max(clock, floor, the latest time it decided at)` (server/decision_time.py), the floor read
at start and after every sweep.
So a ticket or stamp whose record was swept stays spent when the wall clock steps back
before its expiry: in the running server, after a restart, and on a node of several
workers (two stores on one writer process, as two workers write).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from atopos.crypto.tokens import TokenKeys
from atopos.server.config import ServerConfig, rate_limits
from atopos.storage.port import SecretStore, TicketExpired
from atopos.storage.sqlite import SqliteSecretStore
from tests.api_client import create, envelope, reveal, solved, views_left
from tests.integration.store_scenarios import NOW, StoreFactory, body, run_on, secret
from tests.integration.test_lifecycle_stateful import LoopThread, loop_thread  # noqa: F401
from tests.integration.test_stamp_reveal import refused_with, stamped, ticket_url
from tests.integration.test_writer_process import writer_process
from tests.servers import ManualClock, in_process_server

CHALLENGE_TTL = 120  # the defaults, ServerConfig.challenge_ttl and ticket_ttl
TICKET_TTL = 60
# What a ticket of a challenge asked at NOW (and a stamp made at NOW) is remembered until.
REMEMBER_UNTIL = NOW + CHALLENGE_TTL + TICKET_TTL


class SteppedClock(ManualClock):
    """Wall time moved by hand, backwards too (a clock step); intervals on the machine's
    monotonic clock, which no step of the wall clock moves."""

    def monotonic(self) -> float:
        return time.monotonic()

    def set(self, now: float) -> None:
        self.advance(now - self.now())


def stored_floor(database: Path) -> int:
    """The sweep floor in the file, read as an outsider would."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM meta WHERE name = 'sweep_floor'").fetchone()
    finally:
        conn.close()
    return 0 if row is None else int(row[0])


# -- the store ------------------------------------------------------------------------------


@pytest.fixture(params=["writer thread", "writer process"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    database = tmp_path / "atopos.db"
    if request.param == "writer thread":
        yield lambda: SqliteSecretStore(database)
        return
    with writer_process(database) as socket_path:
        yield lambda: SqliteSecretStore(
            database, is_shared_by_processes=True, writer_socket=socket_path
        )


def test_each_sweep_raises_the_floor_which_survives_a_restart_and_never_goes_down(
    store_factory: StoreFactory,
) -> None:
    async def first_run(store: SecretStore) -> list[int]:
        floors = [await store.sweep_floor()]  # start() swept at NOW
        for now in (NOW + 100, NOW + 50, NOW + 250):
            await store.sweep(now)
            floors.append(await store.sweep_floor())
        return floors

    assert run_on(store_factory, first_run) == [NOW, NOW + 100, NOW + 100, NOW + 250]

    async def after_restart_with_the_clock_back() -> int:
        store = store_factory()
        await store.start(NOW - 3600)  # its sweep, at a clock an hour behind
        try:
            await store.sweep(NOW + 10)
            return await store.sweep_floor()
        finally:
            await store.aclose()

    assert asyncio.run(after_restart_with_the_clock_back()) == NOW + 250


def test_a_ticket_at_or_below_the_floor_is_refused_and_takes_no_view(
    store_factory: StoreFactory,
) -> None:
    async def scenario(store: SecretStore) -> None:
        record = secret(views=3, ttl=3600)
        await store.create(record, body(b"three views"))
        sid = record.secret_id
        first = await store.consume(sid, b"t1" * 8, REMEMBER_UNTIL, NOW)
        assert b"".join([piece async for piece in first.chunks]) == b"three views"
        await store.sweep(REMEMBER_UNTIL)  # forgets t1 (its expires_at <= S)
        # The clock stepped back to where the ticket was valid: t1 again, and a new id
        # expiring exactly at the floor, are refused; nothing is taken.
        for ticket_id in (b"t1" * 8, b"t2" * 8):
            with pytest.raises(TicketExpired) as refused:
                await store.consume(sid, ticket_id, REMEMBER_UNTIL, NOW + 10)
            assert refused.value.sweep_floor == REMEMBER_UNTIL
            assert refused.value.message == (
                "The ticket is invalid or expired; start the reveal again."
            )
        info = await store.info(sid, NOW + 10)
        assert info is not None
        assert info.views_left == 2
        # One second above the floor is still a ticket like any other.
        later = await store.consume(sid, b"t3" * 8, REMEMBER_UNTIL + 1, NOW + 10)
        await later.chunks.aclose()
        info = await store.info(sid, NOW + 10)
        assert info is not None
        assert info.views_left == 1

    run_on(store_factory, scenario)


def test_a_worker_that_has_not_read_the_floor_is_refused_by_the_writer(tmp_path: Path) -> None:
    """Two workers on one writer process: one sweeps, the other, whose node still decides
    at an earlier time, is refused by the floor in the transaction, and learns it."""
    database = tmp_path / "atopos.db"
    record = secret(views=2, ttl=3600)
    with writer_process(database) as socket_path:

        def worker() -> SqliteSecretStore:
            return SqliteSecretStore(
                database, is_shared_by_processes=True, writer_socket=socket_path
            )

        async def scenario() -> tuple[int, int, int]:
            sweeping, stale = worker(), worker()
            await sweeping.start(NOW)
            await stale.start(NOW)
            try:
                await stale.create(record, body(b"two views"))
                used = await stale.consume(record.secret_id, b"t1" * 8, REMEMBER_UNTIL, NOW)
                await used.chunks.aclose()
                await sweeping.sweep(REMEMBER_UNTIL + 5)
                with pytest.raises(TicketExpired) as refused:
                    await stale.consume(record.secret_id, b"t1" * 8, REMEMBER_UNTIL, NOW + 10)
                info = await stale.info(record.secret_id, NOW + 10)
                assert info is not None
                return refused.value.sweep_floor, await stale.sweep_floor(), info.views_left
            finally:
                await sweeping.aclose()
                await stale.aclose()

        assert asyncio.run(scenario()) == (REMEMBER_UNTIL + 5, REMEMBER_UNTIL + 5, 1)


# -- the server -----------------------------------------------------------------------------


def _config(data_dir: Path, sweep_interval: float = 3600.0) -> ServerConfig:
    return ServerConfig(
        data_dir=data_dir, pow_bits=0, sweep_interval=sweep_interval, **rate_limits(0)
    )


def _challenge_expiry(client: httpx.Client, url: str, sid: str) -> int:
    """A fresh challenge's expiry: the node's decision time plus challenge_ttl."""
    answer = client.post(f"{url}/api/v1/secrets/{sid}/challenge")
    assert answer.status_code == 200, answer.text
    expires_at: int = answer.json()["expires_at"]
    return expires_at


def _refused_as_expired(answer: httpx.Response) -> None:
    assert answer.status_code == 403, answer.text
    assert answer.json()["message"] == "The ticket is invalid or expired; start the reveal again."


def test_a_swept_ticket_is_refused_when_the_running_servers_clock_steps_back(
    tmp_path: Path,
    loop_thread: LoopThread,  # noqa: F811
) -> None:
    clock = SteppedClock(NOW)
    data_dir = tmp_path / "data"
    store = SqliteSecretStore(data_dir / "atopos.db")
    with (
        in_process_server(_config(data_dir), clock, store) as url,
        httpx.Client(timeout=30) as client,
    ):
        created = create(client, url, envelope(b"two views")[0], views=2, expires_in=3600)
        sid = str(created["id"])
        solved_challenge = solved(client, url, sid)
        first = client.post(ticket_url(url, sid), json=solved_challenge).json()["ticket"]
        assert reveal(client, url, sid, first).status_code == 200
        clock.set(REMEMBER_UNTIL + 1)
        # A sweep the node did not run itself (as another worker's): its floor is only in
        # the database, and this node has seen no request since NOW.
        loop_thread.run(store.sweep(int(clock.now())))
        clock.set(NOW + 10)  # stepped back: the ticket's window (to NOW + 60) is open again
        _refused_as_expired(reveal(client, url, sid, first))
        assert views_left(client, url, created) == 1
        # The refusal told the node the floor: it decides no earlier from now on.
        assert _challenge_expiry(client, url, sid) == REMEMBER_UNTIL + 1 + CHALLENGE_TTL


def test_a_swept_ticket_or_stamp_is_refused_after_a_restart_with_the_clock_back(
    tmp_path: Path,
) -> None:
    """The realistic case: a node restarted with a clock behind (a VM restored). The same
    token key (a key file) keeps the ticket valid across restarts; a stamp needs no key."""
    clock = SteppedClock(NOW)
    data_dir = tmp_path / "data"
    keys = TokenKeys(os.urandom(32))

    def serving() -> contextlib.AbstractContextManager[str]:
        return in_process_server(_config(data_dir), clock, token_keys=keys)

    with serving() as url, httpx.Client(timeout=30) as client:
        created = create(client, url, envelope(b"three views")[0], views=3, expires_in=3600)
        sid = str(created["id"])
        first = client.post(ticket_url(url, sid), json=solved(client, url, sid)).json()["ticket"]
        assert reveal(client, url, sid, first).status_code == 200
        stamp = stamped(sid, NOW)
        assert client.post(ticket_url(url, sid), json=stamp).status_code == 200
        assert views_left(client, url, created) == 1
    clock.set(REMEMBER_UNTIL + 1)
    with serving():
        pass  # its start sweeps: both records are forgotten
    assert stored_floor(data_dir / "atopos.db") == REMEMBER_UNTIL + 1
    clock.set(NOW + 10)
    with serving() as url, httpx.Client(timeout=30) as client:
        # Loaded at start: the node decides at the floor, not at its clock.
        assert _challenge_expiry(client, url, sid) == REMEMBER_UNTIL + 1 + CHALLENGE_TTL
        _refused_as_expired(reveal(client, url, sid, first))
        refused_with(client.post(ticket_url(url, sid), json=stamp), "clock")
        assert views_left(client, url, created) == 1


def test_a_worker_follows_the_floor_another_worker_raised_at_its_next_sweep(
    tmp_path: Path,
    loop_thread: LoopThread,  # noqa: F811
) -> None:
    """Two workers on one writer process, as under `--workers N`: another worker sweeps
    later than this one has decided so far; this worker's own next sweep reads the floor,
    and from then on it answers a stamp whose record was forgotten with a challenge
    ("clock"), as if its clock were the other's."""
    clock = SteppedClock(NOW)
    data_dir = tmp_path / "data"
    database = data_dir / "atopos.db"
    data_dir.mkdir(mode=0o700)
    with writer_process(database) as socket_path:

        def worker_store() -> SqliteSecretStore:
            return SqliteSecretStore(
                database, is_shared_by_processes=True, writer_socket=socket_path
            )

        other = worker_store()
        with (
            in_process_server(_config(data_dir, sweep_interval=0.05), clock, worker_store()) as url,
            httpx.Client(timeout=30) as client,
        ):
            created = create(client, url, envelope(b"two views")[0], views=2, expires_in=3600)
            sid = str(created["id"])
            stamp = stamped(sid, NOW)
            assert client.post(ticket_url(url, sid), json=stamp).status_code == 200
            clock.set(NOW + 10)
            # The other worker's sweep, at a time this one never saw (its clock was ahead).
            loop_thread.run(other.start(REMEMBER_UNTIL + 1))
            try:
                assert stored_floor(database) == REMEMBER_UNTIL + 1
                _poll(
                    lambda: (
                        _challenge_expiry(client, url, sid) == REMEMBER_UNTIL + 1 + CHALLENGE_TTL
                    )
                )
                refused_with(client.post(ticket_url(url, sid), json=stamp), "clock")
                assert views_left(client, url, created) == 1
            finally:
                loop_thread.run(other.aclose())


def _poll(condition: Callable[[], bool], within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("not within the wait")
        time.sleep(0.02)  # polling interval, not a wait for the sweeper
