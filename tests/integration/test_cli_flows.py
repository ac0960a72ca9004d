"""The acceptance tour of the README, run with the real CLI against a real server."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import socket
import subprocess
import time
from pathlib import Path

from bench.harness import end_process, free_port

from tests.servers import ATOPOS, ServerProcess, wait_healthy


def atopos(
    *args: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [ATOPOS, *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_create_reveal_then_gone(server: ServerProcess) -> None:
    created = atopos("--server", server.url, "secret", "create", stdin=b"hi\n")
    assert created.returncode == 0, created.stderr
    link = created.stdout.decode().strip()
    assert link.startswith(f"{server.url}/s/")
    assert "#" in link
    first = atopos("secret", "reveal", link)
    assert (first.returncode, first.stdout) == (0, b"hi\n")
    second = atopos("secret", "reveal", link)
    assert second.returncode == 3
    assert second.stdout == b""
    assert len(second.stderr.decode().strip().splitlines()) == 1
    assert "Traceback" not in second.stderr.decode()


def test_views_three_reveal_three_times(server: ServerProcess) -> None:
    link = atopos("--server", server.url, "secret", "create", "--views", "3", stdin=b"x")
    for _ in range(3):
        assert atopos("secret", "reveal", link.stdout.decode().strip()).stdout == b"x"
    assert atopos("secret", "reveal", link.stdout.decode().strip()).returncode == 3


def test_missing_passphrase_is_refused_before_the_view_is_spent(
    server: ServerProcess, tmp_path: Path
) -> None:
    passphrase = tmp_path / "pass.txt"
    passphrase.write_text("correct horse\n")
    created = atopos(
        "--server",
        server.url,
        "secret",
        "create",
        "--passphrase-file",
        str(passphrase),
        "--json",
        stdin=b"locked",
    )
    assert created.returncode == 0, created.stderr
    links = json.loads(created.stdout)
    refused = atopos("secret", "reveal", links["link"])
    assert refused.returncode == 4
    assert "passphrase" in refused.stderr.decode()
    status = atopos("secret", "status", links["manage_link"])
    assert b"Views left: 1" in status.stdout
    revealed = atopos("secret", "reveal", links["link"], "--passphrase-file", str(passphrase))
    assert (revealed.returncode, revealed.stdout) == (0, b"locked")


def test_file_round_trip_restores_the_name(server: ServerProcess, tmp_path: Path) -> None:
    source = tmp_path / "report.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    created = atopos("--server", server.url, "secret", "create", "--file", str(source))
    assert created.returncode == 0, created.stderr
    out = tmp_path / "out"
    out.mkdir()
    revealed = atopos("secret", "reveal", created.stdout.decode().strip(), "-o", str(out))
    assert revealed.returncode == 0, revealed.stderr
    assert (out / "report.bin").read_bytes() == source.read_bytes()


def test_unreachable_server_exits_5() -> None:
    result = atopos("--server", "http://127.0.0.1:9", "secret", "create", stdin=b"x")
    assert result.returncode == 5
    assert len(result.stderr.decode().strip().splitlines()) == 1


def test_bad_link_exits_2() -> None:
    result = atopos("secret", "reveal", "http://127.0.0.1:9/s/short#key")
    assert result.returncode == 2


def test_status_and_delete(server: ServerProcess) -> None:
    created = atopos("--server", server.url, "secret", "create", "--json", stdin=b"m")
    links = json.loads(created.stdout)
    assert atopos("secret", "delete", links["manage_link"]).returncode == 0
    assert atopos("secret", "reveal", links["link"]).returncode == 3
    assert atopos("secret", "status", links["manage_link"]).returncode == 3


# -- on a terminal ----------------------------------------------------------------------------


def read_until(terminal: int, expected: bytes, timeout: float = 30) -> bytes:
    """What the program wrote to the terminal up to and including `expected`."""
    seen = b""
    deadline = time.monotonic() + timeout
    while expected not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"never saw {expected!r}; saw {seen!r}"
        ready, _, _ = select.select([terminal], [], [], left)
        if ready:
            try:
                seen += os.read(terminal, 4096)
            except OSError:  # the program closed its side
                break
    assert expected in seen, seen
    return seen


def with_a_controlling_terminal(
    args: list[str], stdin: bytes
) -> tuple[subprocess.Popen[bytes], int, int]:
    """`args` in a session of its own whose controlling terminal is a fresh pty (what
    getpass opens as /dev/tty), while stdin, stdout and stderr are pipes. Returns the
    pty's two ends: keep the second open while reading the first (or reads fail)."""
    controller, follower = pty.openpty()
    name = os.ttyname(follower)

    def take_the_terminal() -> None:  # runs after setsid: the first tty opened becomes it
        os.close(os.open(name, os.O_RDWR))

    process = subprocess.Popen(
        args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=take_the_terminal,
    )
    assert process.stdin is not None
    process.stdin.write(stdin)
    process.stdin.close()
    return process, controller, follower


def test_passphrase_typed_on_the_terminal_while_stdin_carries_the_secret(
    server: ServerProcess, tmp_path: Path
) -> None:
    process, terminal, follower = with_a_controlling_terminal(
        [ATOPOS, "secret", "create", "--server", server.url, "--passphrase"], b"locked"
    )
    try:
        shown = read_until(terminal, b"Passphrase for the secret: ")
        os.write(terminal, b"correct horse\n")
        shown += read_until(terminal, b"The same passphrase again: ")
        os.write(terminal, b"correct horse\n")
        process.wait(timeout=60)
    finally:
        end_process(process)
        os.close(terminal)
        os.close(follower)
    assert process.stdout is not None
    assert process.stderr is not None
    stdout, stderr = process.stdout.read(), process.stderr.read()
    assert process.returncode == 0, stderr
    assert b"correct horse" not in shown  # typed without echo
    link = stdout.decode().strip()
    passphrase = tmp_path / "pass.txt"
    passphrase.write_text("correct horse\n")
    revealed = atopos("secret", "reveal", link, "--passphrase-file", str(passphrase))
    assert (revealed.returncode, revealed.stdout) == (0, b"locked")


def test_passphrase_without_any_terminal_is_a_usage_error(server: ServerProcess) -> None:
    result = subprocess.run(
        [ATOPOS, "secret", "create", "--server", server.url, "--passphrase"],
        input=b"x",
        capture_output=True,
        timeout=60,
        check=False,
        start_new_session=True,  # no controlling terminal at all
    )
    assert result.returncode == 2
    assert result.stderr.decode() == (
        "Error: --passphrase asks on a terminal and there is none; use --passphrase-file FILE.\n"
    )


# -- atopos serve -----------------------------------------------------------------------------


def serve_args(tmp_path: Path, port: int, *extra: str) -> list[str]:
    return [ATOPOS, "serve", "--port", str(port), "--data", str(tmp_path / "data"), *extra]


def test_serve_on_a_terminal_prints_where_to_open_it(tmp_path: Path) -> None:
    port = free_port()
    controller, follower = pty.openpty()
    process = subprocess.Popen(
        serve_args(tmp_path, port, "--pow-bits", "12"), stdout=follower, stderr=follower
    )
    os.close(follower)
    try:
        shown = read_until(controller, b"Press Ctrl-C to stop.").decode()
        wait_healthy(f"http://127.0.0.1:{port}", process)
        shown += read_until(controller, b"route=/healthz").decode()
    finally:
        end_process(process)
        os.close(controller)
    lines = shown.splitlines()
    assert lines[0].startswith("Atopos ")
    assert lines[0].endswith(f"is serving at http://127.0.0.1:{port}/")
    assert f"storage: SQLite in {(tmp_path / 'data' / 'atopos.db').resolve()}" in shown
    assert "proof of work: 12 bits" in shown
    assert "{" not in shown  # no JSON lines on a terminal
    assert "Uvicorn" not in shown


def test_serve_logs_json_when_asked_even_on_a_terminal(tmp_path: Path) -> None:
    port = free_port()
    controller, follower = pty.openpty()
    process = subprocess.Popen(
        serve_args(tmp_path, port),
        stdout=follower,
        stderr=follower,
        env={**os.environ, "ATOPOS_LOG_FORMAT": "json"},
    )
    os.close(follower)
    try:
        shown = read_until(controller, b'"msg":"starting"').decode()
    finally:
        end_process(process)
        os.close(controller)
    record = json.loads(shown.strip().splitlines()[-1])
    assert (record["msg"], record["storage"], record["pow_bits"]) == ("starting", "sqlite", 16)
    assert "serving at" not in shown


def test_serve_logs_json_to_a_pipe(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        serve_args(tmp_path, port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process)
    finally:
        end_process(process)
    assert process.stdout is not None
    lines = process.stdout.read().decode().splitlines()
    assert lines
    assert all(json.loads(line)["level"] for line in lines)


def test_serve_on_a_busy_port_is_one_sentence(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            serve_args(tmp_path, port), capture_output=True, timeout=60, check=False
        )
    assert result.returncode == 2
    assert result.stdout == b""
    assert result.stderr.decode() == (
        f"Error: Port {port} is already in use on 127.0.0.1; stop what runs there or pick "
        "another with --port.\n"
    )


def reveal_on_a_terminal(link: str, cwd: Path) -> tuple[int, bytes, str]:
    """`atopos secret reveal LINK` with stdout on a pty: exit code, screen, stderr."""
    controller, follower = pty.openpty()
    process = subprocess.Popen(
        [ATOPOS, "secret", "reveal", link], stdout=follower, stderr=subprocess.PIPE, cwd=cwd
    )
    os.close(follower)
    screen = b""
    try:
        while True:
            ready, _, _ = select.select([controller], [], [], 60)
            assert ready, "the reveal hung"
            try:
                piece = os.read(controller, 65536)
            except OSError:  # EIO: the program closed the terminal
                break
            if not piece:
                break
            screen += piece
        process.wait(timeout=60)
    finally:
        end_process(process)
        os.close(controller)
    assert process.stderr is not None
    return process.returncode, screen, process.stderr.read().decode()


def test_a_terminal_sees_escapes_and_no_binary(server: ServerProcess, tmp_path: Path) -> None:
    created = atopos(
        "secret", "create", "--server", server.url, stdin=b"hi\x1b[2J\x1b]0;owned\x07\n"
    )
    code, screen, stderr = reveal_on_a_terminal(created.stdout.decode().strip(), tmp_path)
    assert code == 0, stderr
    assert b"\x1b" not in screen
    assert b"hi\\x1b[2J\\x1b]0;owned\\x07" in screen
    source = tmp_path / "photo.jpg"
    source.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(5000))
    sent = atopos("secret", "create", "--server", server.url, "--file", str(source))
    code, screen, stderr = reveal_on_a_terminal(sent.stdout.decode().strip(), tmp_path)
    assert code == 2
    assert screen == b""
    assert "was not printed on the terminal" in stderr
    assert (tmp_path / "secret.bin").read_bytes() == source.read_bytes()


def test_human_log_lines_hold_no_ids_keys_or_client_addresses(tmp_path: Path) -> None:
    # The server listens on 127.0.0.2: loopback clients come from 127.0.0.1.
    server = ServerProcess(
        data_dir=tmp_path / "data",
        log_path=tmp_path / "server.log",
        host="127.0.0.2",
        env={"ATOPOS_LOG_FORMAT": "human"},
    ).start()
    try:
        created = atopos("secret", "create", "--server", server.url, "--json", stdin=b"PLAIN")
        links = json.loads(created.stdout)
        assert atopos("secret", "status", links["manage_link"]).returncode == 0
        assert atopos("secret", "reveal", links["link"]).stdout == b"PLAIN"
        assert atopos("secret", "reveal", links["link"]).returncode == 3
    finally:
        server.stop()
    output = server.output()
    # Debug access lines were written (the CLI reveals with the one-shot ticket step).
    assert "route=/api/v1/secrets/{id}/ticket" in output
    assert f"is serving at http://127.0.0.2:{server.port}/" in output
    link_id, key = links["link"].rsplit("/", 1)[1].split("#")
    token = links["manage_link"].rsplit("#", 1)[1]
    for needle in (link_id, key, token, "PLAIN", "127.0.0.1"):
        assert needle not in output
    assert set(re.findall(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}", output)) == {"127.0.0.2"}
    assert "{" not in output.replace("{id}", "")  # no JSON lines
    assert "Traceback" not in output
