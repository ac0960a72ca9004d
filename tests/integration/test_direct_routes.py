"""The hot secrets routes answer the same on the direct path (server/direct_routes.py) as
through Starlette's whole stack: the same requests, good and bad, sent to one node of each
kind (same clock, same random bytes, so the same ids, challenges and tickets) get the same
status, headers and body, and leave the same access log lines."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from atopos.crypto import pow as proof_of_work
from atopos.crypto.base64url import b64url_decode
from atopos.crypto.stamps import make_stamp
from atopos.server.config import ServerConfig, rate_limits
from tests.api_client import (
    OCTETS,
    access_params,
    access_proof,
    envelope,
    remember,
    stamp_proof,
)
from tests.servers import ManualClock, in_process_server

_SECRETS = "/api/v1/secrets"
_UNKNOWN_ID = "A" * 22
# What differs between two answers given at different moments, nothing else.
_MOMENT_HEADERS = frozenset({"date"})

Answer = tuple[int, list[tuple[str, str]], bytes]


def _counted_random() -> Callable[[int], bytes]:
    """The same bytes, draw by draw, for each node (so both make the same ids and keys)."""
    draws = itertools.count()

    def random_bytes(size: int) -> bytes:
        return hashlib.shake_256(next(draws).to_bytes(8, "big")).digest(size)

    return random_bytes


class _AccessLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[str, str, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.__dict__["method"], record.__dict__["route"], record.status))  # type: ignore[attr-defined]


@pytest.fixture
def access_log() -> Iterator[_AccessLog]:
    logger = logging.getLogger("atopos.access")
    handler = _AccessLog()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _answers(url: str, body: bytes, other_body: bytes) -> list[Answer]:
    """One scripted session against `url`: every request, and what came back."""
    answers: list[Answer] = []

    def keep(response: httpx.Response) -> httpx.Response:
        headers = [(k, v) for k, v in response.headers.multi_items() if k not in _MOMENT_HEADERS]
        answers.append((response.status_code, headers, response.content))
        return response

    with httpx.Client(base_url=url, timeout=30) as client:
        params = access_params(body, views=2)
        created = keep(client.post(_SECRETS, params=params, content=body, headers=OCTETS))
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        remember(sid, body)
        other = keep(
            client.post(
                _SECRETS, params=access_params(other_body), content=other_body, headers=OCTETS
            )
        )
        other_sid = other.json()["id"]
        remember(other_sid, other_body)
        # Creates refused: wrong media type, unknown parameter, no access key, too large,
        # cross-site, a bad envelope, a wrong method, a trailing slash.
        keep(
            client.post(
                _SECRETS, params=params, content=body, headers={"content-type": "text/plain"}
            )
        )
        keep(
            client.post(_SECRETS, params={**params, "colour": "red"}, content=body, headers=OCTETS)
        )
        keep(client.post(_SECRETS, params={"views": 1}, content=body, headers=OCTETS))
        keep(client.post(_SECRETS, params=params, content=bytes(70_000), headers=OCTETS))
        keep(
            client.post(
                _SECRETS,
                params=params,
                content=body,
                headers={**OCTETS, "sec-fetch-site": "cross-site"},
            )
        )
        keep(client.post(_SECRETS, params=params, content=b"not an envelope", headers=OCTETS))
        keep(client.get(_SECRETS))
        keep(client.get(_SECRETS, headers={"accept": "text/html"}))
        keep(client.put(_SECRETS, content=body, headers=OCTETS))
        keep(client.post(f"{_SECRETS}/", params=params, content=body, headers=OCTETS))
        # Challenges: unknown, malformed and percent-encoded ids, wrong methods, cross-site
        # by Origin, then good ones.
        keep(client.post(f"{_SECRETS}/{_UNKNOWN_ID}/challenge"))
        keep(client.post(f"{_SECRETS}/short/challenge"))
        keep(client.post(f"{_SECRETS}/%41%42/challenge"))
        keep(client.get(f"{_SECRETS}/{sid}/challenge"))
        keep(client.get(f"{_SECRETS}/{sid}/challenge", headers={"accept": "text/html"}))
        keep(client.post(f"{_SECRETS}/{sid}/challenge/"))
        keep(
            client.post(
                f"{_SECRETS}/{sid}/challenge", headers={"origin": "https://elsewhere.example"}
            )
        )
        first = keep(client.post(f"{_SECRETS}/{sid}/challenge")).json()
        nonce = proof_of_work.solve(first["challenge"].encode(), first["bits"])
        solved = {"challenge": first["challenge"], "nonce": nonce}
        ticket_url = f"{_SECRETS}/{sid}/ticket"
        # Tickets refused: bad JSON, wrong schema, wrong media type, too large, no proof.
        keep(
            client.post(
                ticket_url, content=b"{not json", headers={"content-type": "application/json"}
            )
        )
        keep(client.post(ticket_url, json={"challenge": 5}))
        keep(client.post(ticket_url, content=b"{}", headers={"content-type": "text/plain"}))
        keep(client.post(ticket_url, json={**solved, "pad": "x" * 5000}))
        keep(client.post(ticket_url, json=solved))
        keep(client.delete(ticket_url))
        proof = access_proof(sid, first["challenge"])
        ticket = keep(client.post(ticket_url, json={**solved, "access_proof": proof})).json()
        reveal_url = f"{_SECRETS}/{sid}/reveal"
        keep(client.post(reveal_url, json={"ticket": "x"}))
        keep(client.post(reveal_url, json={"ticket": ticket["ticket"]}))
        keep(client.post(reveal_url, json={"ticket": ticket["ticket"]}))
        keep(client.get(reveal_url))
        # The one-shot ticket on the second secret, then once more (burned).
        second = keep(client.post(f"{_SECRETS}/{other_sid}/challenge")).json()
        one_shot = {
            "challenge": second["challenge"],
            "nonce": proof_of_work.solve(second["challenge"].encode(), second["bits"]),
            "access_proof": access_proof(other_sid, second["challenge"]),
            "reveal": True,
        }
        keep(client.post(f"{_SECRETS}/{other_sid}/ticket", json=one_shot))
        keep(client.post(f"{_SECRETS}/{other_sid}/ticket", json=one_shot))
        # Over the challenge budget (6 a minute): 429 with Retry-After.
        for _ in range(3):
            keep(client.post(f"{_SECRETS}/{sid}/challenge"))
    return answers


def test_the_direct_path_answers_as_starlette_does(
    tmp_path: Path, clock: ManualClock, access_log: _AccessLog
) -> None:
    body, _ = envelope(b"the same on both paths")
    other_body, _ = envelope(b"and the one-shot too")
    answers: dict[bool, list[Answer]] = {}
    logged: dict[bool, list[tuple[str, str, int]]] = {}
    for is_direct in (True, False):
        config = ServerConfig(
            data_dir=tmp_path / f"direct-{is_direct}",
            pow_bits=4,
            max_content_bytes=64 * 1024,
            **{**rate_limits(0), "rate_challenge": 6},
        )
        with in_process_server(
            config, clock, is_direct=is_direct, random_bytes=_counted_random()
        ) as url:
            access_log.lines.clear()
            answers[is_direct] = _answers(url, body, other_body)
            logged[is_direct] = [line for line in access_log.lines if line[1] != "/healthz"]
    direct, plain = answers[True], answers[False]
    assert len(direct) == len(plain)
    for index, (mine, theirs) in enumerate(zip(direct, plain, strict=True)):
        assert mine == theirs, f"answer {index} differs"
    statuses = [status for status, _, _ in plain]
    # The script reached every kind of answer it meant to.
    assert {200, 201, 403, 404, 405, 413, 422, 429} <= set(statuses)
    assert logged[True] == logged[False]
    assert ("POST", f"{_SECRETS}/{{id}}/challenge", 429) in logged[True]


def _stamp_answers(url: str, body: bytes, now: int) -> list[Answer]:
    """A scripted session of stamp requests (docs/protocol/access.md, "Stamp"), each kind of
    answer once: the envelope, a challenge for each reason, and each refusal."""
    answers: list[Answer] = []

    def keep(response: httpx.Response) -> httpx.Response:
        headers = [(k, v) for k, v in response.headers.multi_items() if k not in _MOMENT_HEADERS]
        answers.append((response.status_code, headers, response.content))
        return response

    def stamp_for(sid: str, t: int, salt_byte: int, bits: int = 8) -> dict[str, object]:
        # Fixed salts: both nodes must see the same requests. 8 bits: more than the 4 of
        # --pow-bits plus what the failures of this script add.
        stamp = make_stamp(b64url_decode(sid), t, bytes([salt_byte]) * 16)
        return {
            "stamp": stamp,
            "nonce": proof_of_work.solve(stamp.encode(), bits),
            "access_proof": stamp_proof(sid, stamp),
            "reveal": True,
        }

    with httpx.Client(base_url=url, timeout=30) as client:
        created = keep(
            client.post(_SECRETS, params=access_params(body, views=3), content=body, headers=OCTETS)
        )
        sid = created.json()["id"]
        remember(sid, body)
        ticket_url = f"{_SECRETS}/{sid}/ticket"
        good = stamp_for(sid, now, 1)
        # 422: the schema (a stamp without reveal, with a device proof), then the spelling.
        keep(client.post(ticket_url, json={**good, "reveal": False}))
        keep(client.post(ticket_url, json={**good, "device_proof": "A" * 86}))
        keep(client.post(ticket_url, json={**good, "stamp": str(good["stamp"]) + "\n"}))
        # 404 unknown, 403 made for another secret.
        keep(client.post(f"{_SECRETS}/{_UNKNOWN_ID}/ticket", json=stamp_for(_UNKNOWN_ID, now, 2)))
        keep(client.post(ticket_url, json={**stamp_for(_UNKNOWN_ID, now, 3), "reveal": True}))
        # A challenge instead: the clock, then too little work.
        keep(client.post(ticket_url, json=stamp_for(sid, now - 1000, 4)))
        lazy = stamp_for(sid, now, 5, bits=0)
        lazy["nonce"] = next(
            n for n in range(1000) if not proof_of_work.verify(str(lazy["stamp"]).encode(), n, 4)
        )
        keep(client.post(ticket_url, json=lazy))
        # 403 wrong_key, 413 answer_too_large, the envelope, the same stamp again (403).
        keep(client.post(ticket_url, json={**good, "access_proof": "A" * 86}))
        keep(client.post(ticket_url, json={**good, "max_bytes": 1}))
        keep(client.post(ticket_url, json=good))
        keep(client.post(ticket_url, json=good))
    return answers


def test_the_direct_path_answers_stamps_as_starlette_does(
    tmp_path: Path, clock: ManualClock, access_log: _AccessLog
) -> None:
    body, _ = envelope(b"a stamp on both paths")
    answers: dict[bool, list[Answer]] = {}
    logged: dict[bool, list[tuple[str, str, int]]] = {}
    for is_direct in (True, False):
        config = ServerConfig(
            data_dir=tmp_path / f"direct-{is_direct}", pow_bits=4, **rate_limits(0)
        )
        with in_process_server(
            config, clock, is_direct=is_direct, random_bytes=_counted_random()
        ) as url:
            access_log.lines.clear()
            answers[is_direct] = _stamp_answers(url, body, int(clock.now()))
            logged[is_direct] = [line for line in access_log.lines if line[1] != "/healthz"]
    direct, plain = answers[True], answers[False]
    assert len(direct) == len(plain)
    for index, (mine, theirs) in enumerate(zip(direct, plain, strict=True)):
        assert mine == theirs, f"answer {index} differs"
    statuses = [status for status, _, _ in plain]
    assert statuses == [201, 422, 422, 422, 404, 403, 200, 200, 403, 413, 200, 403]
    assert [json.loads(plain[i][2])["stamp_refused"] for i in (6, 7)] == ["clock", "bits"]
    assert plain[10][2] == body
    assert logged[True] == logged[False]
