"""A reveal in one request with a stamp (docs/protocol/access.md, "Stamp: a reveal in one
request"): the envelope for a good stamp, exactly one view per stamp, and a fresh challenge
(spending nothing, counting nothing) whenever the server cannot take the stamp as it is.

Most tests run a server in this process with an injected clock (tests/servers.py); the
clock, the work and the failure count are read from the server's own answers: a challenge
asks `base + bit_length(failures)` bits, so its `bits` says whether a failure was counted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from atopos.crypto import pow as proof_of_work
from atopos.crypto.access_proof import AccessSigner
from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.crypto.device import DeviceKeys
from atopos.crypto.envelope import Metadata, parse_header, seal
from atopos.crypto.kdf import Argon2Params, derive_passphrase_key
from atopos.crypto.stamps import make_stamp, stamp_id_for
from atopos.server.config import ServerConfig, rate_limits
from tests.api_client import OCTETS, access_proof, create, envelope, stamp_proof, views_left
from tests.servers import ManualClock, ServerProcess, in_process_server

NOW = 1_800_000_000
CHALLENGE_TTL = 120  # the defaults, ServerConfig.challenge_ttl and ticket_ttl
TICKET_TTL = 60
WEAK = Argon2Params(memory_kib=256, iterations=1, lanes=1)
_VECTORS = Path(__file__).resolve().parents[1] / "vectors"
_CHALLENGE_FIELDS = {
    "challenge",
    "bits",
    "expires_at",
    "is_bound",
    "has_passphrase",
    "has_access_key",
    "argon2",
}


def new_stamp(sid: str, t: int) -> str:
    return make_stamp(b64url_decode(sid), t, os.urandom(16))


def stamped(sid: str, t: int, bits: int = 0, **extra: object) -> dict[str, object]:
    """A stamp request body for secret `sid` (made through tests/api_client.py) at time `t`,
    its work done at `bits`."""
    return stamp_body(sid, new_stamp(sid, t), bits, **extra)


def stamp_body(sid: str, stamp: str, bits: int = 0, **extra: object) -> dict[str, object]:
    return {
        "stamp": stamp,
        "nonce": proof_of_work.solve(stamp.encode(), bits),
        "access_proof": stamp_proof(sid, stamp),
        "reveal": True,
        **extra,
    }


def ticket_url(url: str, sid: str) -> str:
    return f"{url}/api/v1/secrets/{sid}/ticket"


def challenge_bits(client: httpx.Client, url: str, sid: str) -> int:
    answer = client.post(f"{url}/api/v1/secrets/{sid}/challenge")
    assert answer.status_code == 200, answer.text
    bits: int = answer.json()["bits"]
    return bits


def refused_with(answer: httpx.Response, reason: str) -> dict[str, Any]:
    """The challenge a stamp was answered with instead of the envelope."""
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    data: dict[str, Any] = answer.json()
    assert set(data) == _CHALLENGE_FIELDS | {"stamp_refused"}
    assert data["stamp_refused"] == reason
    return data


def one_shot(
    client: httpx.Client, url: str, sid: str, challenge: dict[str, Any], **extra: object
) -> httpx.Response:
    """The one-shot ticket step on the challenge a refused stamp was answered with."""
    token = challenge["challenge"]
    body = {
        "challenge": token,
        "nonce": proof_of_work.solve(token.encode(), challenge["bits"]),
        "access_proof": access_proof(sid, token),
        "reveal": True,
        **extra,
    }
    return client.post(ticket_url(url, sid), json=body)


@contextlib.contextmanager
def serving(tmp_path: Path, clock: ManualClock, pow_bits: int = 0, **limits: int) -> Iterator[str]:
    config = ServerConfig(
        data_dir=tmp_path / "data", pow_bits=pow_bits, **{**rate_limits(0), **limits}
    )
    with in_process_server(config, clock) as url:
        yield url


@pytest.fixture
def now_clock() -> ManualClock:
    return ManualClock(NOW)


def test_a_stamp_reveals_the_envelope_in_one_request_and_spends_one_view(
    server: ServerProcess,
) -> None:
    body, _ = envelope(os.urandom(300))
    with httpx.Client(timeout=30) as client:
        created = create(client, server.url, body, views=2)
        sid = str(created["id"])
        answer = client.post(ticket_url(server.url, sid), json=stamped(sid, server_now(server.url)))
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/octet-stream"
        assert answer.headers["content-length"] == str(len(body))
        assert answer.content == body
        assert views_left(client, server.url, created) == 1


def server_now(url: str) -> int:
    """The server's clock, read from a challenge's expiry (a fresh throwaway secret)."""
    with httpx.Client(timeout=30) as client:
        sid = str(create(client, url, envelope(b"clock")[0])["id"])
        answer = client.post(f"{url}/api/v1/secrets/{sid}/challenge").json()
    expires_at: int = answer["expires_at"]
    return expires_at - CHALLENGE_TTL


def test_a_replayed_stamp_is_refused_and_spends_nothing(server: ServerProcess) -> None:
    body, _ = envelope(b"three views")
    with httpx.Client(timeout=30) as client:
        created = create(client, server.url, body, views=3)
        sid = str(created["id"])
        request = stamped(sid, server_now(server.url))
        assert client.post(ticket_url(server.url, sid), json=request).content == body
        # The same stamp again, with the same nonce and with another one.
        for nonce in (request["nonce"], 1):
            replayed = client.post(ticket_url(server.url, sid), json={**request, "nonce": nonce})
            assert replayed.status_code == 403, replayed.text
            assert replayed.json()["error"] == "refused"
        assert views_left(client, server.url, created) == 2


def test_the_window_answers_a_challenge_outside_it(tmp_path: Path, now_clock: ManualClock) -> None:
    body, _ = envelope(b"in time")
    with serving(tmp_path, now_clock) as url, httpx.Client(timeout=30) as client:
        created = create(client, url, body, views=5)
        sid = str(created["id"])
        for t in (NOW - CHALLENGE_TTL - 1, NOW + 31, 0, 10**12 - 1):
            refused = refused_with(client.post(ticket_url(url, sid), json=stamped(sid, t)), "clock")
            assert refused["expires_at"] == NOW + CHALLENGE_TTL
        assert views_left(client, url, created) == 5
        # The edges of the window are inside it.
        for t in (NOW - CHALLENGE_TTL, NOW + 30):
            assert client.post(ticket_url(url, sid), json=stamped(sid, t)).content == body
        # The challenge a refused stamp got works with the one-shot ticket step.
        refused = refused_with(
            client.post(ticket_url(url, sid), json=stamped(sid, NOW - 1000)), "clock"
        )
        assert one_shot(client, url, sid, refused).content == body
        assert views_left(client, url, created) == 2
        # A stamp used at its time is refused (403) while the window lasts, then by the window.
        request = stamped(sid, NOW)
        assert client.post(ticket_url(url, sid), json=request).content == body
        # Its id is remembered for the window and a ticket lifetime of margin.
        stamp_id = stamp_id_for(str(request["stamp"]))
        with contextlib.closing(sqlite3.connect(tmp_path / "data" / "atopos.db")) as conn:
            row = conn.execute("SELECT expires_at FROM used_tickets WHERE id = ?", (stamp_id,))
            assert row.fetchall() == [(NOW + CHALLENGE_TTL + TICKET_TTL,)]
        now_clock.advance(CHALLENGE_TTL)
        assert client.post(ticket_url(url, sid), json=request).status_code == 403
        now_clock.advance(1)
        refused_with(client.post(ticket_url(url, sid), json=request), "clock")
        assert views_left(client, url, created) == 1


def _nonce_with_zero_bits(stamp: str, exactly: int) -> int | None:
    """The smallest nonce whose work has exactly `exactly` leading zero bits (searching a
    little past the first that has at least that many), or None."""
    nonce = proof_of_work.solve(stamp.encode(), exactly)
    for candidate in range(nonce, nonce + 4 * 2**exactly):
        digest = hashlib.sha256(b"%s:%d" % (stamp.encode(), candidate)).digest()
        if proof_of_work.leading_zero_bits(digest) == exactly:
            return candidate
    return None


def _stamp_with_work(sid: str, t: int, exactly: int) -> dict[str, object]:
    while True:
        stamp = new_stamp(sid, t)
        nonce = _nonce_with_zero_bits(stamp, exactly)
        if nonce is not None:
            return {**stamp_body(sid, stamp), "nonce": nonce}


def test_too_little_work_answers_a_challenge_and_enough_reveals(
    tmp_path: Path, now_clock: ManualClock
) -> None:
    body, _ = envelope(b"worked for")
    with serving(tmp_path, now_clock, pow_bits=8) as url, httpx.Client(timeout=30) as client:
        created = create(client, url, body, views=3)
        sid = str(created["id"])
        lazy = _stamp_with_work(sid, NOW, 7)
        refused = refused_with(client.post(ticket_url(url, sid), json=lazy), "bits")
        assert refused["bits"] == 8
        zero = _stamp_with_work(sid, NOW, 0)
        assert refused_with(client.post(ticket_url(url, sid), json=zero), "bits")["bits"] == 8
        # Nothing was counted as a failure, nothing spent; 8 bits of work reveal.
        assert challenge_bits(client, url, sid) == 8
        assert views_left(client, url, created) == 3
        exact = _stamp_with_work(sid, NOW, 8)
        assert client.post(ticket_url(url, sid), json=exact).content == body
        # The refused stamp's challenge works with the one-shot ticket step.
        assert one_shot(client, url, sid, refused).content == body
        assert views_left(client, url, created) == 1


def test_the_work_a_stamp_needs_rises_with_failures(tmp_path: Path, now_clock: ManualClock) -> None:
    body, _ = envelope(b"priced")
    with serving(tmp_path, now_clock, pow_bits=8) as url, httpx.Client(timeout=30) as client:
        created = create(client, url, body, views=2)
        sid = str(created["id"])
        wrong = {**stamped(sid, NOW, 8), "access_proof": access_proof("A" * 22, "x")}
        assert client.post(ticket_url(url, sid), json=wrong).json()["error"] == "wrong_key"
        # One failure: a challenge now asks 9 bits, and so does a stamp.
        assert challenge_bits(client, url, sid) == 9
        eight = _stamp_with_work(sid, NOW, 8)
        assert refused_with(client.post(ticket_url(url, sid), json=eight), "bits")["bits"] == 9
        assert client.post(ticket_url(url, sid), json=stamped(sid, NOW, 9)).content == body
        assert views_left(client, url, created) == 1


def test_a_passphrase_secret_answers_a_challenge_that_then_reveals(
    tmp_path: Path, now_clock: ManualClock
) -> None:
    link_key = os.urandom(32)
    body = seal(
        b"locked", Metadata("text", 6), link_key, random_bytes=os.urandom, passphrase="pw",
        argon2=WEAK,
    )  # fmt: skip
    header = parse_header(body)
    assert header is not None
    assert header.argon2_salt is not None
    salt = header.argon2_salt
    with serving(tmp_path, now_clock) as url, httpx.Client(timeout=30) as client:
        signer = AccessSigner(link_key, derive_passphrase_key("pw", salt, WEAK))
        created = client.post(
            f"{url}/api/v1/secrets",
            params={"access_key": b64url_encode(signer.public_key), "views": 2},
            content=body,
            headers=OCTETS,
        ).json()
        sid = created["id"]
        # A stamp proved with the link key alone: the server cannot take it.
        refused = refused_with(client.post(ticket_url(url, sid), json=stamped(sid, NOW)), "access")
        assert refused["has_passphrase"] is True
        assert refused["argon2"]["salt"] == b64url_encode(salt)
        assert views_left(client, url, created) == 2
        # Even with the right proof: a passphrase secret is always answered with a challenge.
        stamp = new_stamp(sid, NOW)
        right = {
            **stamp_body(sid, stamp),
            "access_proof": b64url_encode(signer.sign_stamp_proof(b64url_decode(sid), stamp)),
        }
        refused = refused_with(client.post(ticket_url(url, sid), json=right), "access")
        token = refused["challenge"]
        answer = client.post(
            ticket_url(url, sid),
            json={
                "challenge": token,
                "nonce": 0,
                "access_proof": b64url_encode(signer.sign_proof(b64url_decode(sid), token)),
                "reveal": True,
            },
        )
        assert answer.content == body
        assert views_left(client, url, created) == 1
        assert challenge_bits(client, url, sid) == 0


def test_a_bound_secret_answers_a_challenge_that_then_reveals(
    tmp_path: Path, now_clock: ManualClock
) -> None:
    device = DeviceKeys.from_seed(os.urandom(32))
    body = seal(
        b"bound", Metadata("text", 5), os.urandom(32), random_bytes=os.urandom,
        device=device.public,
    )  # fmt: skip
    with serving(tmp_path, now_clock) as url, httpx.Client(timeout=30) as client:
        created = create(client, url, body, device_key=b64url_encode(device.public.signing_key))
        sid = str(created["id"])
        refused = refused_with(client.post(ticket_url(url, sid), json=stamped(sid, NOW)), "access")
        assert refused["is_bound"] is True
        assert views_left(client, url, created) == 1
        device_proof = b64url_encode(device.sign_proof(b64url_decode(sid), refused["challenge"]))
        answer = one_shot(client, url, sid, refused, device_proof=device_proof)
        assert answer.content == body


def test_a_secret_without_an_access_key_answers_a_challenge_that_then_reveals(
    tmp_path: Path, now_clock: ManualClock
) -> None:
    body, _ = envelope(b"from before the proof")
    with serving(tmp_path, now_clock) as url, httpx.Client(timeout=30) as client:
        created = create(client, url, body)
        sid = str(created["id"])
        # As a secret stored before the key-knowledge proof existed.
        with contextlib.closing(sqlite3.connect(tmp_path / "data" / "atopos.db")) as conn:
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("UPDATE secrets SET access_key = NULL WHERE id = ?", (b64url_decode(sid),))
            conn.commit()
        refused = refused_with(client.post(ticket_url(url, sid), json=stamped(sid, NOW)), "access")
        assert refused["has_access_key"] is False
        token = refused["challenge"]
        answer = client.post(
            ticket_url(url, sid), json={"challenge": token, "nonce": 0, "reveal": True}
        )
        assert answer.content == body


def test_a_wrong_key_is_refused_counted_and_spends_nothing(
    tmp_path: Path, now_clock: ManualClock
) -> None:
    body, _ = envelope(b"keyed")
    with serving(tmp_path, now_clock, pow_bits=4) as url, httpx.Client(timeout=30) as client:
        created = create(client, url, body)
        sid = str(created["id"])
        request = stamped(sid, NOW, 6)
        other_proof = stamp_proof(sid, new_stamp(sid, NOW))
        for proof in (other_proof, "A" * 86, "not base64!"):
            refused = client.post(ticket_url(url, sid), json={**request, "access_proof": proof})
            assert refused.status_code == 403
            assert refused.json()["error"] == "wrong_key"
        # Three failures: two more bits.
        assert challenge_bits(client, url, sid) == 6
        assert views_left(client, url, created) == 1
        # The stamp itself was not recorded: with the right proof it reveals.
        assert client.post(ticket_url(url, sid), json=request).content == body


def test_a_signature_over_a_stamp_as_a_challenge_buys_nothing(
    tmp_path: Path, now_clock: ManualClock
) -> None:
    # The relay's trick (access.md, "Stamp", threat notes): it hands the reader a future
    # stamp as "a challenge"; the reader's proof over a challenge is under the challenge
    # label, which the server never takes for a stamp, whenever the stamp is sent.
    body, _ = envelope(b"oracle")
    with serving(tmp_path, now_clock, pow_bits=4) as url, httpx.Client(timeout=30) as client:
        created = create(client, url, body)
        sid = str(created["id"])
        future = new_stamp(sid, NOW + 3_600)
        as_challenge = {**stamp_body(sid, future, 4), "access_proof": access_proof(sid, future)}
        now_clock.advance(3_600)
        refused = client.post(ticket_url(url, sid), json=as_challenge)
        assert refused.status_code == 403
        assert refused.json()["error"] == "wrong_key"
        # Counted as a failure, nothing spent: the stamp-labelled proof of the same stamp
        # (which only the reader makes, for a stamp of its own) still reveals.
        assert challenge_bits(client, url, sid) == 5
        assert views_left(client, url, created) == 1
        right = {**as_challenge, "nonce": proof_of_work.solve(future.encode(), 5)}
        right["access_proof"] = stamp_proof(sid, future)
        assert client.post(ticket_url(url, sid), json=right).content == body


def test_an_unknown_secret_and_a_stamp_for_another_are_refused_and_counted(
    tmp_path: Path, now_clock: ManualClock
) -> None:
    body, _ = envelope(b"mine")
    with serving(tmp_path, now_clock, pow_bits=4) as url, httpx.Client(timeout=30) as client:
        created = create(client, url, body)
        sid = str(created["id"])
        unknown = b64url_encode(os.urandom(16))
        gone = client.post(ticket_url(url, unknown), json=stamped(unknown, NOW, 4))
        assert gone.status_code == 404
        assert challenge_bits(client, url, sid) == 5
        # A stamp made for `unknown`, sent to `sid`.
        other = client.post(ticket_url(url, sid), json=stamped(unknown, NOW, 5))
        assert other.status_code == 403
        assert other.json()["error"] == "refused"
        assert challenge_bits(client, url, sid) == 6
        assert views_left(client, url, created) == 1


def _malformed_bodies(sid: str, stamp: str, proof: str) -> list[dict[str, object]]:
    good: dict[str, object] = {"stamp": stamp, "nonce": 0, "access_proof": proof, "reveal": True}
    without = {name: {k: v for k, v in good.items() if k != name} for name in good}
    return [
        {**good, "challenge": "A" * 75},  # both
        {k: v for k, v in good.items() if k != "stamp"},  # neither
        without["reveal"],
        {**good, "reveal": False},
        without["access_proof"],
        {**good, "access_proof": None},
        without["nonce"],
        {**good, "device_proof": "A" * 86},
        {**good, "stamp": 5},
        {**good, "stamp": None},
        {**good, "stamp": ""},
        {**good, "stamp": stamp + "A" * 600},
        {**good, "nonce": -1},
        {**good, "nonce": 2**64},
        {**good, "nonce": "0"},
        {**good, "max_bytes": 0},
        {**good, "colour": "red"},
    ]


def test_malformed_bodies_and_stamps_are_422_and_count_nothing(
    tmp_path: Path, now_clock: ManualClock
) -> None:
    body, _ = envelope(b"strict")
    vectors = json.loads((_VECTORS / "stamps.json").read_text(encoding="utf-8"))
    with serving(tmp_path, now_clock, pow_bits=4) as url, httpx.Client(timeout=30) as client:
        created = create(client, url, body)
        sid = str(created["id"])
        stamp = new_stamp(sid, NOW)
        for bad in _malformed_bodies(sid, stamp, stamp_proof(sid, stamp)):
            answer = client.post(ticket_url(url, sid), json=bad)
            assert answer.status_code == 422, bad
            assert answer.json()["error"] == "invalid_input", bad
        for vector in vectors["invalid"]:
            text = vector["stamp"]
            answer = client.post(
                ticket_url(url, sid),
                json={"stamp": text, "nonce": 0, "access_proof": "A" * 86, "reveal": True},
            )
            assert answer.status_code == 422, vector
            assert answer.json()["error"] == ("invalid_stamp" if text else "invalid_input")
        # Not a single failure counted, nothing spent.
        assert challenge_bits(client, url, sid) == 4
        assert views_left(client, url, created) == 1


def test_max_bytes_refuses_a_larger_envelope_before_anything_is_spent(
    tmp_path: Path, now_clock: ManualClock
) -> None:
    body, _ = envelope(os.urandom(2000))
    with serving(tmp_path, now_clock) as url, httpx.Client(timeout=30) as client:
        created = create(client, url, body)
        sid = str(created["id"])
        request = stamped(sid, NOW)
        refused = client.post(ticket_url(url, sid), json={**request, "max_bytes": len(body) - 1})
        assert refused.status_code == 413
        assert refused.json() == {
            "error": "answer_too_large",
            "message": refused.json()["message"],
            "size": len(body),
        }
        assert views_left(client, url, created) == 1
        # The same stamp, with a cap the envelope fits.
        fits = client.post(ticket_url(url, sid), json={**request, "max_bytes": len(body)})
        assert fits.content == body


@pytest.mark.parametrize("route", ["challenge", "ticket", "reveal"])
def test_a_stamp_counts_against_the_challenge_ticket_and_reveal_limits(
    tmp_path: Path, now_clock: ManualClock, route: str
) -> None:
    body, _ = envelope(b"limited")
    limits = {f"rate_{route}": 2}
    with serving(tmp_path, now_clock, **limits) as url, httpx.Client(timeout=30) as client:
        created = create(client, url, body, views=5)
        sid = str(created["id"])
        for _ in range(2):
            assert client.post(ticket_url(url, sid), json=stamped(sid, NOW)).content == body
        limited = client.post(ticket_url(url, sid), json=stamped(sid, NOW))
        assert limited.status_code == 429
        assert limited.json()["error"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1
        assert views_left(client, url, created) == 3


def test_the_openapi_document_describes_the_stamp_and_its_answers(server: ServerProcess) -> None:
    document = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    schemas = document["components"]["schemas"]
    assert "s1." in schemas["TicketRequest"]["properties"]["stamp"]["anyOf"][0]["description"]
    assert schemas["TicketRequest"]["required"] == ["nonce"]
    refused = schemas["StampRefusedResponse"]
    assert set(refused["properties"]["stamp_refused"]["enum"]) == {"access", "clock", "bits"}
    assert set(refused["required"]) == _CHALLENGE_FIELDS | {"stamp_refused"}
    answers = document["paths"]["/api/v1/secrets/{id}/ticket"]["post"]["responses"]
    one_of = answers["200"]["content"]["application/json"]["schema"]["oneOf"]
    assert {"$ref": "#/components/schemas/StampRefusedResponse"} in one_of
    assert "invalid_stamp" in answers["422"]["description"]


def test_a_large_envelope_streams_from_a_stamp_request(server: ServerProcess) -> None:
    # Over the 1 MiB of the one-body answer: the envelope streams from a read snapshot.
    body, _ = envelope(os.urandom(3 * 1024 * 1024))
    with httpx.Client(timeout=60) as client:
        created = create(client, server.url, body)
        sid = str(created["id"])
        request = stamped(sid, server_now(server.url))
        with client.stream("POST", ticket_url(server.url, sid), json=request) as answer:
            assert answer.status_code == 200
            assert answer.headers["content-type"] == "application/octet-stream"
            assert answer.headers["content-length"] == str(len(body))
            assert answer.read() == body
        assert views_left(client, server.url, created) == 0
