"""The node key file: `atopos serve` refuses a key file others may read, or one it cannot
parse, with one sentence; a good one makes every node sign, verify and identify alike."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from atopos.crypto.tokens import TokenKeys
from atopos.errors import InvalidInput
from atopos.server.identity import EphemeralIdentifiers
from atopos.server.keyfile import load_key_file
from tests.redis_servers import write_key_file
from tests.servers import ATOPOS, free_port

DAY = 24 * 3600


def serve(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ATOPOS, "serve", "--port", str(free_port()), "--data", str(tmp_path / "data"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """What a person reads: every line but the JSON log lines (the log says "starting")."""
    assert "Traceback" not in result.stderr
    return [line for line in result.stderr.splitlines() if not line.startswith("{")]


@pytest.mark.parametrize("mode", [0o640, 0o604])
def test_serve_refuses_a_key_file_others_can_read(tmp_path: Path, mode: int) -> None:
    key_file = write_key_file(tmp_path / "atopos.key", os.urandom(32))
    key_file.chmod(mode)
    result = serve(tmp_path, "--key-file", str(key_file))
    assert result.returncode == 2
    assert error_lines(result) == [
        f"Error: The key file {key_file} is readable by group or others; run chmod 600 on it."
    ]


def test_serve_refuses_a_bad_key_file_from_the_environment(tmp_path: Path) -> None:
    key_file = tmp_path / "atopos.key"
    key_file.write_text("not a key\n")
    key_file.chmod(0o600)
    result = serve(tmp_path, env={"ATOPOS_KEY_FILE": str(key_file)})
    assert result.returncode == 2
    (line,) = error_lines(result)
    assert line.endswith("must hold one or two lines, each 32 bytes as base64url.")


def test_load_key_file(tmp_path: Path) -> None:
    current, previous = os.urandom(32), os.urandom(32)
    keys = load_key_file(write_key_file(tmp_path / "one.key", current))
    assert (keys.current, keys.previous) == (current, None)
    keys = load_key_file(write_key_file(tmp_path / "two.key", current, previous))
    assert (keys.current, keys.previous) == (current, previous)
    # The previous key verifies what it signed; the current one signs.
    old_ticket = TokenKeys(previous).issue_ticket(b"s" * 16, b"t" * 16, 2_000, 2_060)
    assert keys.token_keys().open_ticket(old_ticket, b"s" * 16, 1_000).ticket_id == b"t" * 16
    for bad in ("", "\n\n", "a\nb\nc\n", "AAAA\n"):
        (tmp_path / "bad.key").write_text(bad)
        (tmp_path / "bad.key").chmod(0o600)
        with pytest.raises(InvalidInput):
            load_key_file(tmp_path / "bad.key")
    with pytest.raises(InvalidInput, match="cannot be read"):
        load_key_file(tmp_path / "missing.key")


def test_identifiers_from_one_node_key_agree_across_nodes_and_rotate_daily() -> None:
    node_key = os.urandom(32)
    start = 20_000 * DAY + 5
    first = EphemeralIdentifiers(start, node_key=node_key)
    # Another node, started hours later, names the same client the same way.
    second = EphemeralIdentifiers(start + 7 * 3600, node_key=node_key)
    ident = first.for_address("192.0.2.1", start + 60)
    assert second.for_address("192.0.2.1", start + 8 * 3600) == ident
    assert first.for_address("192.0.2.2", start + 60) != ident
    # The next day both switch to a new key, at the same moment.
    next_day = 20_001 * DAY
    assert first.for_address("192.0.2.1", next_day - 1) == ident
    assert first.for_address("192.0.2.1", next_day) != ident
    assert first.for_address("192.0.2.1", next_day) == second.for_address("192.0.2.1", next_day)
    # Another deployment's key, or the single-node default (a random key), disagree.
    assert (
        EphemeralIdentifiers(start, node_key=os.urandom(32)).for_address("192.0.2.1", start)
        != ident
    )
    assert EphemeralIdentifiers(start).for_address("192.0.2.1", start) != ident
