"""Untrusted input the CLI reads besides the device store (passphrase files, `--file`,
stdin, links, numbers from a server) fails as one line with the documented exit code."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

import atopos.client.api as api_module
from atopos.cli.exits import ExitCode
from atopos.cli.main import run
from atopos.cli.passphrase import MAX_PASSPHRASE_FILE_BYTES
from atopos.client.links import InvalidLink, parse_server_url, parse_share_link
from atopos.crypto.base64url import b64url_encode

SERVER = "http://fake.test"
SECRET_ID = b64url_encode(bytes(range(16)))
KEY = b64url_encode(bytes(32))
TOKEN = b64url_encode(bytes(range(32)))
ATOPOS = str(Path(sys.executable).with_name("atopos"))


@dataclasses.dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


def atopos(*args: str, stdin: bytes = b"") -> Outcome:
    with CliRunner().isolation(input=stdin, env={"ATOPOS_DEBUG": None}) as (out, err, _):
        code = run(["--server", SERVER, *args])
        sys.stdout.flush()
        sys.stderr.flush()
        return Outcome(code, out.getvalue().decode(), err.getvalue().decode())


def assert_one_line_error(outcome: Outcome, code: int) -> None:
    assert outcome.code == code, outcome.stderr
    assert outcome.stdout == ""
    assert outcome.stderr.startswith("Error: ")
    assert outcome.stderr.count("\n") == 1, outcome.stderr
    assert "Traceback" not in outcome.stderr


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> dict[str, httpx.Response]:
    """Canned answers by the last path segment ("challenge", "status", ...); the server
    answers 500 to anything else."""
    canned: dict[str, httpx.Response] = {}
    real = api_module.build_http_client

    def handle(request: httpx.Request) -> httpx.Response:
        route = request.url.path.rstrip("/").rsplit("/", 1)[1]
        return canned.get(route, httpx.Response(500))

    def build(url: str, **options: Any) -> httpx.Client:
        return real(url, **{**options, "transport": httpx.MockTransport(handle)})

    monkeypatch.setattr(api_module, "build_http_client", build)
    return canned


# -- passphrase files ------------------------------------------------------------------------


def test_a_passphrase_file_is_read_only_up_to_its_limit(tmp_path: Path) -> None:
    huge = tmp_path / "huge"
    huge.write_bytes(b"a" * (MAX_PASSPHRASE_FILE_BYTES + 1))
    outcome = atopos("secret", "create", "--passphrase-file", str(huge), stdin=b"x")
    assert_one_line_error(outcome, ExitCode.USAGE)
    assert "larger than 64 KiB" in outcome.stderr


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_dev_zero_is_not_a_passphrase() -> None:
    # It passes typer's checks (exists, not a directory, readable) and never ends.
    outcome = atopos("secret", "create", "--passphrase-file", "/dev/zero", stdin=b"x")
    assert_one_line_error(outcome, ExitCode.USAGE)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_a_passphrase_from_a_pipe_still_works(tmp_path: Path, answers: dict[str, Any]) -> None:
    # `--passphrase-file <(pass show x)` is a pipe: the bound must not refuse it.
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(b"pass phrase\n"), daemon=True)
    writer.start()
    answers["secrets"] = httpx.Response(
        201, json={"id": SECRET_ID, "manage_token": TOKEN, "expires_at": 1_900_000_000}
    )
    outcome = atopos("secret", "create", "--passphrase-file", str(fifo), stdin=b"x")
    writer.join(timeout=10)
    assert outcome.code == ExitCode.OK, outcome.stderr
    assert outcome.stdout.startswith(f"{SERVER}/s/{SECRET_ID}#")


# -- --file and stdin ------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_a_fifo_given_to_file_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # nobody will ever write to it: opening it would block forever
    outcome = atopos("secret", "create", "--file", str(fifo))
    assert_one_line_error(outcome, ExitCode.USAGE)
    assert "not a regular file" in outcome.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file descriptors")
@pytest.mark.parametrize(
    "args", [("secret", "create"), ("device", "recover")], ids=lambda args: "-".join(args)
)
def test_closed_stdin_is_one_line(args: tuple[str, ...], tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ATOPOS_HOME": str(tmp_path / "home"),
        "ATOPOS_KEYRING": "off",
        "ATOPOS_SERVER": "http://127.0.0.1:9",
    }
    env.pop("ATOPOS_DEBUG", None)
    result = subprocess.run(
        [ATOPOS, *args],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
        preexec_fn=lambda: os.close(0),  # Python then starts with sys.stdin None
    )
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert result.stdout == b""
    assert result.stderr.startswith(b"Error: There is no stdin")
    assert result.stderr.count(b"\n") == 1


# -- links -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "a" * 64,  # a DNS label is at most 63 characters: the resolver raises UnicodeError
        "a" * 64 + ".example",
        ("a" * 60 + ".") * 5 + "example",  # over 253 characters
        "a..b",
        ".a",
        "256.1.1.1",  # httpx refuses it
        "xn--",  # idna refuses these when httpx decodes the host
        "xn--a",
        "xn--abc-",
    ],
)
def test_hosts_that_would_crash_the_client_are_refused(host: str) -> None:
    with pytest.raises(InvalidLink, match="not a valid host"):
        parse_share_link(f"https://{host}/s/{SECRET_ID}#{KEY}")
    with pytest.raises(InvalidLink):
        parse_server_url(f"https://{host}")


@pytest.mark.parametrize(
    "host", ["atopos.example", "atopos.example.", "127.0.0.1", "[::1]", "xn--bcher-kva.example"]
)
def test_good_hosts_still_pass(host: str) -> None:
    assert parse_share_link(f"https://{host}/s/{SECRET_ID}#{KEY}").server == f"https://{host}"


def test_a_bad_host_in_a_link_is_one_line() -> None:
    outcome = atopos("secret", "reveal", f"https://xn--/s/{SECRET_ID}#{KEY}")
    assert_one_line_error(outcome, ExitCode.USAGE)


# -- numbers from a server -------------------------------------------------------------------


def status_body(**changes: int) -> dict[str, object]:
    body: dict[str, object] = {
        "views_left": 1,
        "expires_at": 1_900_000_000,
        "created_at": 1_899_990_000,
        "kind": "text",
        "size": 512,
    }
    body.update(changes)
    return body


@pytest.mark.parametrize(
    "changes",
    [
        {"views_left": 10**5000},  # too long for str(): ValueError in Python >= 3.11
        {"expires_at": 10**30},  # no date: OverflowError
        {"expires_at": -(10**30)},
        {"size": -1},
    ],
    ids=["views-5000-digits", "expires-far-future", "expires-far-past", "size-negative"],
)
def test_nonsense_numbers_from_a_server_are_a_network_error(
    changes: dict[str, int], answers: dict[str, httpx.Response]
) -> None:
    content = _json_with_big_ints(status_body(**changes))
    answers["status"] = httpx.Response(
        200, content=content, headers={"content-type": "application/json"}
    )
    outcome = atopos("secret", "status", f"{SERVER}/m/{SECRET_ID}#{TOKEN}")
    assert_one_line_error(outcome, ExitCode.NETWORK)
    assert "does not understand" in outcome.stderr


def test_a_date_out_of_reach_is_shown_as_a_number(answers: dict[str, httpx.Response]) -> None:
    # Within the range accepted, yet past what datetime can show (year 10000 and later).
    answers["status"] = httpx.Response(200, json=status_body(expires_at=400_000_000_000))
    outcome = atopos("secret", "status", f"{SERVER}/m/{SECRET_ID}#{TOKEN}")
    assert outcome.code == ExitCode.OK, outcome.stderr
    assert "Expires at: 400000000000 (seconds since 1970)" in outcome.stdout


def _json_with_big_ints(body: dict[str, object]) -> bytes:
    # json.dumps itself refuses an int of over 4300 digits; write the digits by hand.
    parts = []
    for name, value in body.items():
        text = f'"{value}"' if isinstance(value, str) else _digits(value)
        parts.append(f'"{name}": {text}')
    return ("{" + ", ".join(parts) + "}").encode()


def _digits(value: object) -> str:
    assert isinstance(value, int)
    if abs(value) < 10**4000:
        return str(value)
    sign = "-" if value < 0 else ""
    return sign + "1" + "0" * 5000


@pytest.mark.parametrize(
    ("status", "code", "sentence"),
    [
        (200, ExitCode.NETWORK, "does not understand"),
        # An error answer whose message cannot be read: our own sentence is shown instead.
        (400, ExitCode.USAGE, "rejected the request as invalid"),
    ],
)
def test_json_nested_past_the_parser_depth_is_one_sentence(
    status: int, code: ExitCode, sentence: str, answers: dict[str, httpx.Response]
) -> None:
    # msgspec raises RecursionError, not DecodeError, past its depth limit.
    nested = b'{"message": "x", "extra": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"
    answers["status"] = httpx.Response(
        status, content=nested, headers={"content-type": "application/json"}
    )
    outcome = atopos("secret", "status", f"{SERVER}/m/{SECRET_ID}#{TOKEN}")
    assert_one_line_error(outcome, code)
    assert sentence in outcome.stderr
