"""The decision whether a rate-limit Redis persists (storage/ephemeral_redis.py), from
CONFIG answers given as data; the check's states, with the Redis replaced by a function that
returns those answers. The same check against real `redis-server` processes is in
integration/test_redis_ratelimit_persistence.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.servers import ManualClock

from atopos.errors import InvalidInput, RateLimited, Unavailable
from atopos.server.config import ServerConfig
from atopos.server.ratelimit import RateLimits
from atopos.storage.ephemeral_redis import (
    OPT_OUT_VARIABLE,
    Finding,
    Persistence,
    PersistenceCheck,
    Settings,
    check_at_start,
    judge,
    refusal,
)

EPHEMERAL = {"appendonly": "no", "save": ""}
AOF = {"appendonly": "yes", "save": ""}
SNAPSHOTS = {"appendonly": "no", "save": "3600 1 300 100 60 10000"}
INCOMPLETE = "CONFIG GET without appendonly or save"
FIX = (
    "point ATOPOS_RATE_LIMIT_STORAGE at a Redis without persistence "
    "(deploy/redis/atopos-ephemeral.conf) or set it to memory:// for per-node limits"
)


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ([EPHEMERAL], Finding(Persistence.NONE)),
        ([{"appendonly": "no", "save": "  "}], Finding(Persistence.NONE)),
        ([EPHEMERAL, EPHEMERAL, EPHEMERAL], Finding(Persistence.NONE)),
        ([AOF], Finding(Persistence.ON_DISK, "appendonly yes")),
        ([SNAPSHOTS], Finding(Persistence.ON_DISK, 'save "3600 1 300 100 60 10000"')),
        ([{"appendonly": "yes", "save": "900 1"}], Finding(Persistence.ON_DISK, "appendonly yes")),
        # One node of a Cluster is enough.
        ([EPHEMERAL, EPHEMERAL, SNAPSHOTS], judge([SNAPSHOTS])),
        (None, Finding(Persistence.UNKNOWN, "CONFIG refused")),
        ([], Finding(Persistence.UNKNOWN, "no node answered")),
        ([{"appendonly": "no"}], Finding(Persistence.UNKNOWN, INCOMPLETE)),
        ([EPHEMERAL, {"save": ""}], Finding(Persistence.UNKNOWN, INCOMPLETE)),
    ],
)
def test_judge(answers: Sequence[Settings] | None, expected: Finding) -> None:
    assert judge(answers) == expected


_VALUES = st.sampled_from(["yes", "no", "", "3600 1", " ", "900 1 300 10"])


@given(st.lists(st.fixed_dictionaries({"appendonly": _VALUES, "save": _VALUES}), min_size=1))
def test_only_no_aof_and_no_save_point_on_every_node_is_off_disk(
    answers: list[dict[str, str]],
) -> None:
    is_off_disk = all(n["appendonly"] == "no" and not n["save"].strip() for n in answers)
    assert (judge(answers).persistence is Persistence.NONE) is is_off_disk


@pytest.mark.parametrize("is_default", [True, False])
def test_a_refusal_is_one_sentence_that_names_the_fix(is_default: bool) -> None:
    on_disk = refusal(judge([AOF]), is_default=is_default)
    unknown = refusal(judge(None), is_default=is_default)
    assert refusal(judge([EPHEMERAL]), is_default=is_default) is None
    for sentence in (on_disk, unknown):
        assert sentence is not None
        assert "\n" not in sentence
        assert sentence.endswith(".")
        assert FIX in sentence
        assert ("ATOPOS_RATE_LIMIT_STORAGE is unset" in sentence) is is_default
    assert on_disk is not None
    assert unknown is not None
    assert "(appendonly yes)" in on_disk
    # The opt-out is offered only where the node cannot tell, not for a Redis that persists.
    assert f"{OPT_OUT_VARIABLE}=1" in unknown
    assert OPT_OUT_VARIABLE not in on_disk


class FakeRedis:
    """Stands in for `read_persistence_settings`: answers as told, counts the questions."""

    def __init__(self, answers: Sequence[Settings] | Exception | None) -> None:
        self.answers = answers
        self.questions = 0

    def __call__(self, url: str) -> Sequence[Settings] | None:
        self.questions += 1
        if isinstance(self.answers, Exception):
            raise self.answers
        return self.answers


DOWN = Unavailable("The server's rate-limit storage is unavailable; try again shortly.")


def test_check_at_start_refuses_a_persistent_redis_and_passes_an_ephemeral_one() -> None:
    with pytest.raises(InvalidInput, match="appendonly yes"):
        check_at_start("redis://r", is_default=True, read=FakeRedis([AOF]))
    with pytest.raises(InvalidInput, match="does not answer CONFIG GET"):
        check_at_start("redis://r", is_default=False, read=FakeRedis(None))
    assert check_at_start("redis://r", is_default=False, read=FakeRedis([EPHEMERAL])).is_verified


def test_an_unreachable_redis_at_start_is_asked_before_the_first_counter(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis = FakeRedis(DOWN)
    check = check_at_start("redis://r", is_default=False, read=redis)
    assert not check.is_verified
    assert "unreachable at start" in caplog.text

    async def scenario() -> None:
        with pytest.raises(Unavailable):
            await check.ensure()  # still down: asked again, 503
        redis.answers = [EPHEMERAL]
        await check.ensure()
        await check.ensure()  # once seen without persistence, not asked again...
        assert redis.questions == 3
        check.forget()  # ...until the Redis failed
        await check.ensure()
        assert redis.questions == 4

    asyncio.run(scenario())


def test_a_redis_found_persistent_later_fails_closed_with_one_error_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis = FakeRedis([SNAPSHOTS])
    check = PersistenceCheck("redis://r", is_default=False, read=redis)

    async def scenario() -> None:
        for _ in range(3):
            with pytest.raises(Unavailable):
                await check.ensure()
        check.forget()  # an outage does not lift the refusal
        with pytest.raises(Unavailable):
            await check.ensure()

    with caplog.at_level(logging.ERROR, logger="atopos.server"):
        asyncio.run(scenario())
    assert check.is_refused
    assert redis.questions == 1
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert getattr(errors[0], "reason", None) == 'save "3600 1 300 100 60 10000"'


def test_a_verified_redis_is_asked_again_every_recheck_interval() -> None:
    """Issue 19: once per interval on the injected clock, not per request; a Redis found
    persistent then is refused like one found persistent after an outage."""
    redis = FakeRedis([EPHEMERAL])
    clock = ManualClock(0)
    check = check_at_start("redis://r", is_default=False, read=redis, clock=clock, recheck_every=60)

    async def scenario() -> None:
        clock.advance(59)
        await check.ensure()
        assert redis.questions == 1
        clock.advance(1)
        assert not check.is_verified
        await asyncio.gather(*(check.ensure() for _ in range(5)))
        assert redis.questions == 2
        redis.answers = [AOF]
        clock.advance(59)
        await check.ensure()
        clock.advance(1)
        with pytest.raises(Unavailable):
            await check.ensure()
        assert check.is_refused
        assert redis.questions == 3

    asyncio.run(scenario())


def test_without_an_interval_a_verified_redis_is_not_asked_again() -> None:
    redis = FakeRedis([EPHEMERAL])
    clock = ManualClock(0)
    check = check_at_start(
        "redis://r", is_default=False, read=redis, clock=clock, recheck_every=None
    )
    clock.advance(10**9)
    asyncio.run(check.ensure())
    assert redis.questions == 1


def test_concurrent_requests_share_one_question() -> None:
    redis = FakeRedis([EPHEMERAL])
    check = PersistenceCheck("redis://r", is_default=False, read=redis)

    async def scenario() -> None:
        await asyncio.gather(*(check.ensure() for _ in range(20)))

    asyncio.run(scenario())
    assert redis.questions == 1
    assert check.is_verified


def test_rate_limits_write_no_counter_before_the_check_passed() -> None:
    """In memory here, so that the counters can be seen: a refused check keeps every call
    from touching them; a passed one lets them count."""
    refused, passed = (
        RateLimits(
            {"create": 2},
            persistence_check=PersistenceCheck("redis://r", is_default=False, read=redis),
        )
        for redis in (FakeRedis([AOF]), FakeRedis([EPHEMERAL]))
    )

    async def scenario() -> None:
        for call in (
            refused.hit("create", "someone"),
            refused.record_failure("someone"),
            refused.extra_bits("someone"),
        ):
            with pytest.raises(Unavailable):
                await call
        await passed.hit("create", "someone")
        await passed.hit("create", "someone")
        with pytest.raises(RateLimited):
            await passed.hit("create", "someone")

    asyncio.run(scenario())


def test_config_reads_the_opt_out_and_sends_counters_to_redis_only_with_limits_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(OPT_OUT_VARIABLE, raising=False)
    monkeypatch.delenv("ATOPOS_RATE_LIMIT", raising=False)
    monkeypatch.delenv("ATOPOS_STORAGE", raising=False)
    monkeypatch.delenv("ATOPOS_RATE_LIMIT_STORAGE", raising=False)
    assert not ServerConfig.from_env().accepts_persistent_rate_limit_storage
    assert ServerConfig.from_env().has_rate_limits()
    monkeypatch.setenv(OPT_OUT_VARIABLE, "1")
    assert ServerConfig.from_env().accepts_persistent_rate_limit_storage
    monkeypatch.setenv(OPT_OUT_VARIABLE, "0")
    assert not ServerConfig.from_env().accepts_persistent_rate_limit_storage
    monkeypatch.setenv(OPT_OUT_VARIABLE, "maybe")
    with pytest.raises(ValueError, match="yes/no"):
        ServerConfig.from_env()
    monkeypatch.delenv(OPT_OUT_VARIABLE)
    monkeypatch.setenv("ATOPOS_STORAGE", "redis://127.0.0.1:6380/0")
    assert ServerConfig.from_env().resolved_rate_limit_storage_url() == "redis://127.0.0.1:6380/0"
    monkeypatch.setenv("ATOPOS_RATE_LIMIT", "0")
    assert not ServerConfig.from_env().has_rate_limits()
    # Limits off: even the failure counts stay in memory, so no Redis needs checking.
    assert ServerConfig.from_env().resolved_rate_limit_storage_url() is None
