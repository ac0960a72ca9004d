"""The SDK's reveal driver tells the envelope from JSON by the answer's media type
(docs/protocol/access.md, "Servers without it"), against a hostile server on loopback that
answers the one-shot ticket step and the reveal step in ways no Atopos server does: a JSON
media type with parameters and odd case is still JSON, an oversized JSON success is refused
rather than taken for the envelope, JSON where the envelope was due is not understood, and
no answer makes the client send more than one reveal or one fallback."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from atopos.client.api import SecretsApi
from atopos.client.links import parse_share_link
from atopos.client.secrets import reveal_secret
from atopos.client.server_bits import SERVER_BITS
from atopos.crypto.access_proof import AccessSigner, verify_access_proof, verify_stamp_proof
from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.errors import AtoposError, Gone, NetworkError
from atopos.protocol.access_path import DEFAULT_STAMP_BITS

SECRET_ID = b64url_encode(bytes(range(16)))
LINK_KEY = b64url_encode(bytes(range(32)))
_CHALLENGE = {"challenge": "a-challenge", "bits": 0, "expires_at": 2_000_000_000}
_TICKET = {"ticket": "a-ticket", "expires_at": 2_000_000_000}
_GONE = {"error": "gone", "message": "This secret no longer exists."}


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes


def as_json(value: object, content_type: str = "application/json") -> Answer:
    return Answer(200, content_type, json.dumps(value).encode())


@dataclass
class Script:
    """What the server answers at each step (in turn), and what it was asked."""

    ticket: list[Answer] = field(default_factory=list)
    reveal: list[Answer] = field(default_factory=list)
    asked: list[tuple[str, dict[str, object]]] = field(default_factory=list)


class _HostileServer(http.server.ThreadingHTTPServer):
    script = Script()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _HostileServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        request = json.loads(self.rfile.read(length) or b"{}")
        step = self.path.rsplit("/", 1)[-1]
        self.server.script.asked.append((step, request))
        if step == "challenge":
            answer = as_json(_CHALLENGE)
        else:
            answers = self.server.script.ticket if step == "ticket" else self.server.script.reveal
            answer = answers.pop(0) if answers else Answer(404, "application/json", b"{}")
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def hostile() -> Iterator[_HostileServer]:
    server = _HostileServer(("127.0.0.1", 0), _Handler)
    server.script = Script()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def reveal_from(server: _HostileServer, *, stamp: bool = False) -> None:
    """Reveal through `server`; the challenge walk unless `stamp` (these scripts answer the
    ticket step in turn, whatever it carries)."""
    url = f"http://127.0.0.1:{server.server_address[1]}"
    with SecretsApi(url) as api:
        link = parse_share_link(f"{url}/s/{SECRET_ID}#{LINK_KEY}")
        reveal_secret(api, link, bytearray().extend, stamp=stamp, assumed_bits=0)


def steps(server: _HostileServer) -> list[str]:
    return [step for step, _ in server.script.asked]


def test_a_json_media_type_with_parameters_is_a_ticket_not_the_envelope(
    hostile: _HostileServer,
) -> None:
    hostile.script.ticket = [as_json(_TICKET, "Application/JSON ; charset=UTF-8")]
    hostile.script.reveal = [Answer(404, "application/json", json.dumps(_GONE).encode())]
    with pytest.raises(Gone):
        reveal_from(hostile)
    assert steps(hostile) == ["challenge", "ticket", "reveal"]
    assert hostile.script.asked[1][1]["reveal"] is True
    assert hostile.script.asked[2][1] == {"ticket": "a-ticket"}


def test_an_oversized_json_success_is_refused_not_taken_for_the_envelope(
    hostile: _HostileServer,
) -> None:
    padded = {**_TICKET, "padding": "x" * (100 * 1024)}
    hostile.script.ticket = [as_json(padded)]
    with pytest.raises(NetworkError, match="oversized"):
        reveal_from(hostile)
    assert steps(hostile) == ["challenge", "ticket"]


def test_json_where_the_envelope_was_due_is_not_understood(hostile: _HostileServer) -> None:
    hostile.script.ticket = [as_json(_TICKET)]
    hostile.script.reveal = [as_json(_TICKET)]
    with pytest.raises(NetworkError, match="does not understand"):
        reveal_from(hostile)
    assert steps(hostile) == ["challenge", "ticket", "reveal"]


def test_a_second_422_ends_the_walk_after_one_fallback_with_the_same_proof(
    hostile: _HostileServer,
) -> None:
    refusal = Answer(422, "application/json", b'{"error":"invalid_input","message":"no"}')
    hostile.script.ticket = [refusal, refusal]
    with pytest.raises(AtoposError):
        reveal_from(hostile)
    assert steps(hostile) == ["challenge", "ticket", "ticket"]
    first, second = hostile.script.asked[1][1], hostile.script.asked[2][1]
    assert first.pop("reveal") is True
    assert second == first  # the same challenge and nonce, without `reveal`


def test_an_oversized_json_answer_to_a_stamp_is_refused_not_taken_for_the_envelope(
    hostile: _HostileServer,
) -> None:
    padded = {**_CHALLENGE, "stamp_refused": "clock", "padding": "x" * (100 * 1024)}
    hostile.script.ticket = [as_json(padded)]
    with pytest.raises(NetworkError, match="oversized"):
        reveal_from(hostile, stamp=True)
    assert steps(hostile) == ["ticket"]
    assert str(hostile.script.asked[0][1]["stamp"]).startswith(f"s1.{SECRET_ID}.")


def test_a_stamp_answered_with_a_challenge_goes_on_from_it(hostile: _HostileServer) -> None:
    refused = {**_CHALLENGE, "stamp_refused": "clock"}
    hostile.script.ticket = [as_json(refused, "application/json; charset=utf-8"), as_json(_TICKET)]
    hostile.script.reveal = [Answer(404, "application/json", json.dumps(_GONE).encode())]
    with pytest.raises(Gone):
        reveal_from(hostile, stamp=True)
    assert steps(hostile) == ["ticket", "ticket", "reveal"]
    assert hostile.script.asked[1][1]["challenge"] == "a-challenge"


def test_a_stamp_handed_out_as_a_challenge_is_neither_signed_nor_solved(
    hostile: _HostileServer,
) -> None:
    # A relay's trick: a future stamp as "the challenge" (docs/protocol/access.md, "Stamp").
    future = f"s1.{SECRET_ID}.1900086400.{b64url_encode(bytes(16))}"
    refused = {**_CHALLENGE, "challenge": future, "has_access_key": True, "stamp_refused": "clock"}
    hostile.script.ticket = [as_json(refused)]
    with pytest.raises(NetworkError, match="does not understand"):
        reveal_from(hostile, stamp=True)
    assert steps(hostile) == ["ticket"]
    # The one stamp sent was proved under the stamp label, which no challenge's proof is.
    sent = hostile.script.asked[0][1]
    stamp, proof = str(sent["stamp"]), str(sent["access_proof"])
    public = AccessSigner(b64url_decode(LINK_KEY)).public_key
    assert verify_stamp_proof(public, b64url_decode(SECRET_ID), stamp, proof)
    assert not verify_access_proof(public, b64url_decode(SECRET_ID), stamp, proof)


def test_negative_bits_are_not_understood_nor_remembered(hostile: _HostileServer) -> None:
    url = f"http://127.0.0.1:{hostile.server_address[1]}"
    hostile.script.ticket = [as_json({**_CHALLENGE, "bits": -1, "stamp_refused": "bits"})] * 2
    link = parse_share_link(f"{url}/s/{SECRET_ID}#{LINK_KEY}")
    for _ in range(2):  # the second reveal starts from what the first remembered
        with SecretsApi(url) as api, pytest.raises(NetworkError, match="does not understand"):
            reveal_secret(api, link, bytearray().extend)
    assert steps(hostile) == ["ticket", "ticket"]
    assert SERVER_BITS.assumed(url) == DEFAULT_STAMP_BITS
