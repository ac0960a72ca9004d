"""`--help` as a new user reads it: real metavars, and limits that match the server's."""

from __future__ import annotations

import re
import sys

import pytest
import typer
from typer.testing import CliRunner

from atopos.cli.main import app, run
from atopos.cli.secret import MIN_EXPIRES_SECONDS
from atopos.server.config import ServerConfig


def _command_paths(
    command: typer.core.TyperGroup, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, sub in command.commands.items():
        if isinstance(sub, typer.core.TyperGroup):
            paths.extend(_command_paths(sub, (*prefix, name)))
        else:
            paths.append((*prefix, name))
    return paths


COMMANDS = _command_paths(typer.main.get_command(app))  # type: ignore[arg-type]


def help_of(path: tuple[str, ...]) -> str:
    with CliRunner().isolation(env={"COLUMNS": "200"}) as (out, err, _):
        code = run([*path, "--help"])
        sys.stdout.flush()
        assert code == 0, err.getvalue()
        return str(out.getvalue().decode())


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "atopos")
def test_every_option_shows_a_real_metavar(path: tuple[str, ...]) -> None:
    text = help_of(path)
    # typer's type labels and click's defaults: <bool>, <str>, <int range>, <path>, TEXT...
    assert not re.search(r"<(bool|str|int|float|path|file|dir|int range)>", text), text
    assert not re.search(r"\b(TEXT|INTEGER|BOOLEAN|FILENAME)\b", text), text


def test_the_commands_are_all_seen() -> None:
    assert {("secret", "create"), ("secret", "reveal"), ("serve",), ("device", "init")} <= set(
        COMMANDS
    )


def test_create_help_states_the_default_servers_limits() -> None:
    text = " ".join(help_of(("secret", "create")).split())
    defaults = ServerConfig()
    assert defaults.max_ttl == 30 * 86400
    assert "at least 1m, at most 30d" in text
    assert MIN_EXPIRES_SECONDS == 60
    assert defaults.max_views == 100
    assert "1 to 100" in text
    assert defaults.max_content_bytes == 100 * 1024 * 1024
    assert "up to 100 MiB" in text
    # Every example of a duration is one the server accepts (60 s is its minimum).
    assert "30s" not in text
    for number, unit in re.findall(r"\b(\d+)([smhdw])\b", text):
        seconds = int(number) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
        assert 60 <= seconds <= defaults.max_ttl, f"{number}{unit}"


@pytest.mark.parametrize(
    "path",
    [("secret", "create"), ("secret", "reveal"), ("secret", "status"), ("device", "show")],
)
def test_global_options_are_listed_after_the_command(path: tuple[str, ...]) -> None:
    text = help_of(path)
    assert "--server" in text
    assert "--pin-spki" in text
    assert "--ca-file" in text


def test_serve_has_no_server_option() -> None:
    assert "--server" not in help_of(("serve",))
