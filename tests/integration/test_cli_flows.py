"""The acceptance tour of the README, run with the real CLI against a real server."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.servers import ATOPOS, ServerProcess


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
