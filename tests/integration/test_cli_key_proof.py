"""The CLI with a wrong passphrase file or a link with one character changed: exit 4, one
sentence, and the secret is still there (the key-knowledge proof, docs/protocol/access.md)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.integration.test_cli_flows import atopos
from tests.servers import ServerProcess


def _create(server: ServerProcess, *options: str) -> dict[str, str]:
    created = atopos("--server", server.url, "secret", "create", "--json", *options, stdin=b"kept")
    assert created.returncode == 0, created.stderr
    links: dict[str, str] = json.loads(created.stdout)
    return links


def _views_left(manage_link: str) -> bytes:
    status = atopos("secret", "status", manage_link)
    assert status.returncode == 0, status.stderr
    return status.stdout


def _assert_refused_as_wrong_key(result: subprocess.CompletedProcess[bytes]) -> None:
    assert result.returncode == 4
    assert result.stdout == b""
    stderr = result.stderr.decode()
    assert len(stderr.strip().splitlines()) == 1
    assert "key in the link or the passphrase is wrong" in stderr
    assert "Traceback" not in stderr


def test_a_wrong_passphrase_file_exits_4_and_spends_nothing(
    server: ServerProcess, tmp_path: Path
) -> None:
    right, wrong = tmp_path / "right.txt", tmp_path / "wrong.txt"
    right.write_text("correct horse\n")
    wrong.write_text("correct horse!\n")
    links = _create(server, "--passphrase-file", str(right))
    before = _views_left(links["manage_link"])
    assert b"Views left: 1" in before
    refused = atopos("secret", "reveal", links["link"], "--passphrase-file", str(wrong))
    _assert_refused_as_wrong_key(refused)
    assert _views_left(links["manage_link"]) == before
    revealed = atopos("secret", "reveal", links["link"], "--passphrase-file", str(right))
    assert (revealed.returncode, revealed.stdout) == (0, b"kept")


def test_a_link_with_one_character_changed_exits_4_and_spends_nothing(
    server: ServerProcess,
) -> None:
    links = _create(server)
    before = _views_left(links["manage_link"])
    base, _, key = links["link"].partition("#")
    changed = key[:5] + ("B" if key[5] != "B" else "C") + key[6:]
    refused = atopos("secret", "reveal", f"{base}#{changed}")
    _assert_refused_as_wrong_key(refused)
    assert _views_left(links["manage_link"]) == before
    revealed = atopos("secret", "reveal", links["link"])
    assert (revealed.returncode, revealed.stdout) == (0, b"kept")
