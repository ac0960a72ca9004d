"""The secret lifecycle as Hypothesis state machines, against the real thing.

`StorageLifecycle` drives the storage port of the real adapters (an SQLite file, one
Redis, a Redis Cluster: the session servers of tests/integration/conftest.py) through
create / consume / replay / race / expire / delete / sweep / reopen in any order, and
`HttpLifecycle` drives an in-process server (hand-moved clock, PoW at 0 bits) through
create / challenge / ticket / reveal / replay / status / delete / expire / sweep over HTTP,
so the access path (signed challenges, single-use tickets) is in the loop too.

Both compare every answer with a model of what the secret may still give, and that model
is the lifecycle table (atopos.protocol.secret_lifecycle): each rule asks the table for the
next state and the answer. So each view is handed out exactly once and only before expiry,
a ticket (and every ticket minted from one solved challenge) buys at most one view, and a
deleted, burned or expired secret gives nothing. Short runs in `make test`; `make fuzz` runs
them for longer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    multiple,
    rule,
    run_state_machine_as_test,
)

from atopos.crypto.envelope import open_envelope
from atopos.errors import Gone
from atopos.protocol.secret_lifecycle import Answer, Event, SecretLifecycle
from atopos.server.config import ServerConfig, rate_limits
from atopos.storage.port import NewSecret, SecretStore, TicketUsed
from atopos.storage.redis import RedisSecretStore
from atopos.storage.sqlite import CHUNK_BYTES, SqliteSecretStore
from tests.api_client import OCTETS, access_params, access_proof, envelope, remember
from tests.fuzzing import fuzz_settings
from tests.servers import ManualClock, in_process_server

T = TypeVar("T")
START = 1_800_000_000
TICKET_TTL = 60


class LoopThread:
    """An event loop on a thread of its own: the machines' rules are synchronous, the
    stores are not, and the main thread may already run a loop (Playwright's)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    runner = LoopThread()
    try:
        yield runner
    finally:
        runner.close()


async def _body(data: bytes) -> Any:
    for start in range(0, len(data), 256 * 1024):
        yield data[start : start + 256 * 1024]


# -- the storage port ----------------------------------------------------------------------


@dataclasses.dataclass
class StoredModel:
    body: bytes
    expires_at: int
    record: NewSecret
    lifecycle: SecretLifecycle

    @property
    def views_left(self) -> int:
        return self.lifecycle.views_left

    @property
    def in_storage(self) -> bool:
        """False once burned (last view), deleted, or swept after expiry."""
        return self.lifecycle.is_stored


@dataclasses.dataclass
class UsedTicket:
    secret_id: bytes
    ticket_id: bytes
    expires_at: int
    # An SQLite sweep at or after `expires_at` forgets it; Redis keeps it for its TTL.
    is_forgotten: bool = False
    # The ticket that took the last view is not recorded (the table's `redeems_ticket`).
    is_recorded: bool = True


class StorageLifecycle(RuleBasedStateMachine):
    """The storage port against a model (set `make_store`, `is_sqlite` and `runner` first)."""

    make_store: Callable[[], SecretStore]
    is_sqlite: bool
    runner: LoopThread

    secrets = Bundle("secrets")
    tickets = Bundle("tickets")

    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.model: dict[bytes, StoredModel] = {}
        self.used: list[UsedTicket] = []
        self.store = self.make_store()
        self.run(self.store.start(self.now))

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coroutine)

    def teardown(self) -> None:
        self.run(self.store.aclose())

    async def _consume(self, secret_id: bytes, ticket_id: bytes) -> bytes:
        revealed = await self.store.consume(secret_id, ticket_id, self.now + TICKET_TTL, self.now)
        data = b"".join([piece async for piece in revealed.chunks])
        assert len(data) == revealed.size
        return data

    def _expect_consume(self, secret_id: bytes, ticket_id: bytes, outcome: object) -> bool:
        """Check one consume's outcome (bytes or an exception) against the model and apply
        it; True when it took a view."""
        model = self.model[secret_id]
        move = model.lifecycle.handle(Event.CONSUME)
        if move.answer is Answer.BODY:
            assert outcome == model.body, f"expected the body, got {outcome!r:.80}"
            self.used.append(
                UsedTicket(
                    secret_id, ticket_id, self.now + TICKET_TTL, is_recorded=move.redeems_ticket
                )
            )
            return True
        assert move.answer is Answer.GONE
        assert isinstance(outcome, Gone), f"expected Gone, got {outcome!r:.80}"
        return False

    def _attempt(self, secret_id: bytes, ticket_id: bytes) -> object:
        try:
            return self.run(self._consume(secret_id, ticket_id))
        except (Gone, TicketUsed) as error:
            return error

    def _forget_expired(self) -> int:
        """What an SQLite sweep does to the model; returns how many secrets it burns."""
        answers = [model.lifecycle.handle(Event.SWEEP).answer for model in self.model.values()]
        for ticket in self.used:
            if ticket.expires_at <= self.now:
                ticket.is_forgotten = True
        return answers.count(Answer.BURNED)

    @rule(
        target=secrets,
        views=st.integers(min_value=1, max_value=3),
        ttl=st.sampled_from([60, 61, 120, 600, 3600]),
        size=st.sampled_from([0, 1, 100, 5000, CHUNK_BYTES, CHUNK_BYTES + 17]),
        is_bound=st.booleans(),
        has_passphrase=st.booleans(),
    )
    def create(
        self, views: int, ttl: int, size: int, is_bound: bool, has_passphrase: bool
    ) -> bytes:
        record = NewSecret(
            secret_id=os.urandom(16),
            manage_token_hash=os.urandom(32),
            kind="file" if size > 100 else "text",
            views=views,
            created_at=self.now,
            expires_at=self.now + ttl,
            device_key=os.urandom(32) if is_bound else None,
            has_passphrase=has_passphrase,
        )
        data = os.urandom(size)
        assert self.run(self.store.create(record, _body(data))) == size
        lifecycle = SecretLifecycle.created(views)
        self.model[record.secret_id] = StoredModel(data, record.expires_at, record, lifecycle)
        return record.secret_id

    @rule(target=tickets, secret_id=secrets)
    def consume(self, secret_id: bytes) -> object:
        ticket_id = os.urandom(16)
        if self._expect_consume(secret_id, ticket_id, self._attempt(secret_id, ticket_id)):
            return ticket_id
        return multiple()

    @rule(secret_id=secrets, attempts=st.integers(min_value=2, max_value=8))
    def race(self, secret_id: bytes, attempts: int) -> None:
        """Concurrent consumers of one secret get exactly the views it has left."""
        model = self.model[secret_id]
        # The table, one fresh ticket after another: which order the store serialized the
        # attempts in does not matter, only how many take a view.
        answers = [model.lifecycle.handle(Event.CONSUME).answer for _ in range(attempts)]
        expected = answers.count(Answer.BODY)
        ticket_ids = [os.urandom(16) for _ in range(attempts)]

        async def one(ticket_id: bytes) -> object:
            try:
                return await self._consume(secret_id, ticket_id)
            except (Gone, TicketUsed) as error:
                return error

        async def all_at_once() -> list[object]:
            return await asyncio.gather(*(one(ticket_id) for ticket_id in ticket_ids))

        outcomes = self.run(all_at_once())
        won = [t for t, o in zip(ticket_ids, outcomes, strict=True) if isinstance(o, bytes)]
        assert len(won) == expected, f"{len(won)} of {attempts} won, expected {expected}"
        assert all(o == model.body or isinstance(o, Gone) for o in outcomes)
        # Which winner took the last view is not known, so none of them is replayed (they
        # are not in the `tickets` bundle); they are listed for the sweep's bookkeeping.
        for ticket_id in won:
            self.used.append(UsedTicket(secret_id, ticket_id, self.now + TICKET_TTL))

    @rule(ticket_id=tickets)
    def replay(self, ticket_id: bytes) -> None:
        """A redeemed ticket is refused and consumes nothing, for as long as it is kept."""
        used = next(t for t in reversed(self.used) if t.ticket_id == ticket_id)
        outcome = self._attempt(used.secret_id, ticket_id)
        if not used.is_recorded:
            # It took the last view: no record, and the secret is gone with it.
            move = self.model[used.secret_id].lifecycle.handle(Event.CONSUME)
            assert move.answer is Answer.GONE
            assert isinstance(outcome, Gone), f"replay gave {outcome!r:.80}"
            return
        if not used.is_forgotten:
            lifecycle = self.model[used.secret_id].lifecycle
            move = lifecycle.handle(Event.CONSUME, is_ticket_redeemed=True)
            assert move.answer is Answer.TICKET_USED
            assert isinstance(outcome, TicketUsed), f"replay gave {outcome!r:.80}"
            return
        # Forgotten after its expiry (the access layer refuses it long before, 403): the
        # storage treats it as new, and records it again if it takes a view.
        self.used.remove(used)
        if not self._expect_consume(used.secret_id, ticket_id, outcome):
            self.used.append(used)  # still a ticket that was once redeemed (and forgotten)

    @rule(secret_id=secrets)
    def info(self, secret_id: bytes) -> None:
        model = self.model[secret_id]
        info = self.run(self.store.info(secret_id, self.now))
        if model.lifecycle.handle(Event.READ).answer is Answer.GONE:
            assert info is None
            return
        assert info is not None
        record = model.record
        assert (info.secret_id, info.size, info.views_left) == (
            secret_id,
            len(model.body),
            model.views_left,
        )
        assert (info.kind, info.created_at, info.expires_at) == (
            record.kind,
            record.created_at,
            record.expires_at,
        )
        assert info.manage_token_hash == record.manage_token_hash
        assert info.device_key == record.device_key
        assert info.has_passphrase is record.has_passphrase

    @rule(secret_id=secrets)
    def delete(self, secret_id: bytes) -> None:
        model = self.model[secret_id]
        answer = model.lifecycle.handle(Event.DELETE).answer
        assert self.run(self.store.delete(secret_id)) is (answer is Answer.BURNED)

    @rule(seconds=st.sampled_from([1, 59, 60, 61, 600, 3600]))
    def advance(self, seconds: int) -> None:
        self.now += seconds
        _expire(self.now, [(m.expires_at, m.lifecycle) for m in self.model.values()])

    @rule()
    def sweep(self) -> None:
        swept = self.run(self.store.sweep(self.now))
        if self.is_sqlite:
            assert swept == self._forget_expired()
        else:
            # Redis expires keys itself (native TTLs, in real seconds); sweeping is a no-op.
            assert swept == 0

    @rule()
    def reopen(self) -> None:
        """Close the store and open a new one on the same data: nothing acknowledged is lost."""
        self.run(self.store.aclose())
        self.store = self.make_store()
        self.run(self.store.start(self.now))
        if self.is_sqlite:
            self._forget_expired()  # start() sweeps
        self.run(self.store.check())


@pytest.mark.fuzz
@pytest.mark.parametrize(
    ("backend", "examples"), [("sqlite", 25), ("redis", 20), ("redis-cluster", 10)]
)
def test_storage_lifecycle(
    backend: str,
    examples: int,
    tmp_path: Path,
    loop_thread: LoopThread,
    request: pytest.FixtureRequest,
) -> None:
    if backend == "sqlite":
        example_dir = tmp_path

        def make_store() -> SecretStore:
            return SqliteSecretStore(example_dir / "atopos.db")

        class Machine(StorageLifecycle):
            def __init__(self) -> None:
                # A fresh file per example (its `reopen` opens the same one again); unique
                # also across the rounds of `make fuzz`, which call this test repeatedly.
                nonlocal example_dir
                example_dir = Path(tempfile.mkdtemp(dir=tmp_path))
                super().__init__()

    else:
        fixture = "redis_url" if backend == "redis" else "redis_cluster_url"
        url = request.getfixturevalue(fixture)

        def make_store() -> SecretStore:
            return RedisSecretStore.from_url(url)

        class Machine(StorageLifecycle):  # type: ignore[no-redef]
            pass

    Machine.make_store = staticmethod(make_store)  # type: ignore[assignment]
    Machine.is_sqlite = backend == "sqlite"
    Machine.runner = loop_thread
    run_state_machine_as_test(Machine, settings=fuzz_settings(examples, stateful_step_count=30))


# -- the HTTP API ---------------------------------------------------------------------------


def _expire(now: int, secrets: list[tuple[int, SecretLifecycle]]) -> None:
    """The EXPIRE event for every secret whose expires_at the clock has reached."""
    for expires_at, lifecycle in secrets:
        if expires_at <= now:
            lifecycle.handle(Event.EXPIRE)


@dataclasses.dataclass
class ApiSecret:
    id: str
    key: bytes
    envelope: bytes
    content: bytes
    manage_token: str
    kind: str
    expires_at: int
    lifecycle: SecretLifecycle

    @property
    def views_left(self) -> int:
        return self.lifecycle.views_left


@dataclasses.dataclass
class IssuedChallenge:
    secret: ApiSecret
    text: str
    expires_at: int
    # One solved challenge buys at most one view, whichever of its tickets redeems it.
    is_spent: bool = False


@dataclasses.dataclass
class IssuedTicket:
    challenge: IssuedChallenge
    text: str
    expires_at: int


class HttpLifecycle(RuleBasedStateMachine):
    """The secrets API of a live server against a model (set the class attributes first)."""

    url: str
    clock: ManualClock
    store: SecretStore
    runner: LoopThread
    client: httpx.Client

    secrets = Bundle("secrets")
    challenges = Bundle("challenges")
    tickets = Bundle("tickets")

    def __init__(self) -> None:
        super().__init__()
        self.made: list[ApiSecret] = []

    @property
    def now(self) -> int:
        return int(self.clock.now())

    def _is_live(self, secret: ApiSecret) -> bool:
        """Whether the API's READ of the secret (before a challenge or a ticket) finds it."""
        return secret.lifecycle.handle(Event.READ).answer is Answer.INFO

    def _api(self, path: str) -> str:
        return f"{self.url}/api/v1/secrets{path}"

    @initialize()
    def start_clean(self) -> None:
        # Examples share the server and its clock; a fresh hour keeps them apart.
        self.clock.advance(3600)

    @rule(
        target=secrets,
        views=st.integers(min_value=1, max_value=3),
        expires_in=st.sampled_from([60, 120, 600, 3600]),
        kind=st.sampled_from(["text", "file"]),
        content=st.binary(max_size=64),
    )
    def create(self, views: int, expires_in: int, kind: str, content: bytes) -> ApiSecret:
        body, key = envelope(content)
        response = self.client.post(
            self._api(""),
            params=access_params(body, views=views, expires_in=expires_in, kind=kind),
            content=body,
            headers=OCTETS,
        )
        assert response.status_code == 201, response.text
        created = response.json()
        remember(created["id"], body)
        assert created["expires_at"] == self.now + expires_in
        secret = ApiSecret(
            created["id"],
            key,
            body,
            content,
            created["manage_token"],
            kind,
            self.now + expires_in,
            SecretLifecycle.created(views),
        )
        self.made.append(secret)
        return secret

    @rule(target=challenges, secret=secrets)
    def challenge(self, secret: ApiSecret) -> object:
        response = self.client.post(self._api(f"/{secret.id}/challenge"))
        if not self._is_live(secret):
            assert response.status_code == 404, response.text
            return multiple()
        assert response.status_code == 200, response.text
        issued = response.json()
        assert issued["bits"] == 0
        assert issued["expires_at"] == self.now + 120
        return IssuedChallenge(secret, issued["challenge"], issued["expires_at"])

    @rule(target=tickets, challenge=challenges)
    def ticket(self, challenge: IssuedChallenge) -> object:
        response = self.client.post(
            self._api(f"/{challenge.secret.id}/ticket"),
            json={
                "challenge": challenge.text,
                "nonce": 0,
                "access_proof": access_proof(challenge.secret.id, challenge.text),
            },
        )
        if challenge.expires_at <= self.now:
            assert response.status_code == 403, response.text
            return multiple()
        if not self._is_live(challenge.secret):
            assert response.status_code == 404, response.text
            return multiple()
        assert response.status_code == 200, response.text
        issued = response.json()
        assert issued["expires_at"] == min(self.now + 60, challenge.expires_at + 60)
        return IssuedTicket(challenge, issued["ticket"], issued["expires_at"])

    @rule(ticket=tickets)
    def reveal(self, ticket: IssuedTicket) -> None:
        """Also the replay: the bundle hands the same ticket out again."""
        secret = ticket.challenge.secret
        response = self.client.post(self._api(f"/{secret.id}/reveal"), json={"ticket": ticket.text})
        # An expired ticket is refused by the access layer before it reaches the store.
        if ticket.expires_at <= self.now:
            answer, is_recorded = Answer.TICKET_USED, False
        else:
            move = secret.lifecycle.handle(
                Event.CONSUME, is_ticket_redeemed=ticket.challenge.is_spent
            )
            answer, is_recorded = move.answer, move.redeems_ticket
        if answer is Answer.TICKET_USED:
            assert response.status_code == 403, (
                f"{response.status_code}: a ticket of a spent challenge or an expired one "
                "must be refused"
            )
            return
        if answer is Answer.GONE:
            assert response.status_code == 404, response.text
            return
        assert answer is Answer.BODY
        assert response.status_code == 200, response.text
        assert response.content == secret.envelope
        assert open_envelope(response.content, secret.key)[1] == secret.content
        # The ticket that took the last view leaves no record: a replay finds the secret gone.
        ticket.challenge.is_spent = is_recorded

    @rule(ticket=tickets, other=secrets)
    def reveal_elsewhere(self, ticket: IssuedTicket, other: ApiSecret) -> None:
        """A ticket opens only the secret it was minted for; trying costs nothing."""
        if other is ticket.challenge.secret:
            return
        response = self.client.post(self._api(f"/{other.id}/reveal"), json={"ticket": ticket.text})
        assert response.status_code == 403, response.text

    @rule(challenge=challenges, other=secrets)
    def ticket_elsewhere(self, challenge: IssuedChallenge, other: ApiSecret) -> None:
        if other is challenge.secret:
            return
        response = self.client.post(
            self._api(f"/{other.id}/ticket"), json={"challenge": challenge.text, "nonce": 0}
        )
        assert response.status_code == 403, response.text

    def _managed(
        self, method: str, path: str, secret: ApiSecret, with_token: bool, ok: int
    ) -> httpx.Response | None:
        """A manage request, with the right token or a wrong one; checks the refusals and
        returns the answer only when it must be `ok`."""
        token = secret.manage_token if with_token else "A" * 43
        response = self.client.request(
            method, self._api(path), headers={"authorization": f"Bearer {token}"}
        )
        answer = secret.lifecycle.handle(Event.MANAGE, is_token_right=with_token).answer
        if answer is Answer.GONE:
            assert response.status_code == 404, response.text
        elif answer is Answer.REFUSED:
            assert response.status_code == 403, response.text
        else:
            assert answer is Answer.ALLOWED
            assert response.status_code == ok, response.text
            return response
        return None

    @rule(secret=secrets, with_token=st.booleans())
    def status(self, secret: ApiSecret, with_token: bool) -> None:
        response = self._managed("GET", f"/{secret.id}/status", secret, with_token, ok=200)
        if response is not None:
            status = response.json()
            assert status["views_left"] == secret.views_left
            assert status["expires_at"] == secret.expires_at
            assert status["kind"] == secret.kind
            assert status["size"] == len(secret.envelope)

    @rule(secret=secrets, with_token=st.booleans())
    def delete(self, secret: ApiSecret, with_token: bool) -> None:
        if self._managed("DELETE", f"/{secret.id}", secret, with_token, ok=204) is not None:
            assert secret.lifecycle.handle(Event.DELETE).answer is Answer.BURNED

    @rule(seconds=st.sampled_from([1, 30, 59, 60, 61, 120, 600]), then_sweep=st.booleans())
    def advance(self, seconds: int, then_sweep: bool) -> None:
        """Time passes, and the server's sweeper (every `sweep_interval`) may run."""
        self.clock.advance(seconds)
        _expire(self.now, [(secret.expires_at, secret.lifecycle) for secret in self.made])
        if then_sweep:
            # Not applied to the model: over HTTP an expired secret and a swept one answer
            # alike (the table's EXPIRED and GONE rows), and the Redis sweep is its TTL.
            self.runner.run(self.store.sweep(self.now))


@pytest.mark.fuzz
@pytest.mark.parametrize(("backend", "examples"), [("sqlite", 30), ("redis", 15)])
def test_http_lifecycle(
    backend: str,
    examples: int,
    tmp_path: Path,
    loop_thread: LoopThread,
    request: pytest.FixtureRequest,
) -> None:
    clock = ManualClock(START)
    data_dir = Path(tempfile.mkdtemp(dir=tmp_path))  # fresh for each round of `make fuzz`
    config = ServerConfig(data_dir=data_dir, pow_bits=0, sweep_interval=3600.0, **rate_limits(0))
    store: SecretStore
    if backend == "sqlite":
        store = SqliteSecretStore(data_dir / "atopos.db")
    else:
        store = RedisSecretStore.from_url(request.getfixturevalue("redis_url"))
    with in_process_server(config, clock, store) as url, httpx.Client(timeout=30) as client:

        class Machine(HttpLifecycle):
            pass

        Machine.url = url
        Machine.clock = clock
        Machine.store = store
        Machine.runner = loop_thread
        Machine.client = client
        run_state_machine_as_test(Machine, settings=fuzz_settings(examples, stateful_step_count=40))


def test_a_later_ticket_of_a_spent_challenge_is_refused_after_a_sweep(
    tmp_path: Path, loop_thread: LoopThread
) -> None:
    """The case `make fuzz` found (kept as a plain test, so `make test` always checks it):
    two tickets of one challenge, the first redeemed, then a sweep after the first expired
    and before the second did. The second must not buy another view."""
    clock = ManualClock(START)
    config = ServerConfig(
        data_dir=tmp_path / "data", pow_bits=0, sweep_interval=3600.0, **rate_limits(0)
    )
    store = SqliteSecretStore(tmp_path / "data" / "atopos.db")
    with in_process_server(config, clock, store) as url, httpx.Client(timeout=30) as client:
        api = f"{url}/api/v1/secrets"
        body, _ = envelope(b"two views")
        created = client.post(
            api, params=access_params(body, views=2), content=body, headers=OCTETS
        ).json()
        sid = created["id"]
        remember(sid, body)
        challenge = client.post(f"{api}/{sid}/challenge").json()["challenge"]
        solved = {"challenge": challenge, "nonce": 0, "access_proof": access_proof(sid, challenge)}
        first = client.post(f"{api}/{sid}/ticket", json=solved).json()["ticket"]
        assert client.post(f"{api}/{sid}/reveal", json={"ticket": first}).status_code == 200
        clock.advance(60)
        second = client.post(f"{api}/{sid}/ticket", json=solved).json()["ticket"]
        clock.advance(1)
        loop_thread.run(store.sweep(int(clock.now())))
        replay = client.post(f"{api}/{sid}/reveal", json={"ticket": second})
        assert replay.status_code == 403, "one proof of work bought a second view"
        status = client.get(
            f"{api}/{sid}/status", headers={"authorization": f"Bearer {created['manage_token']}"}
        )
        assert status.json()["views_left"] == 1
