"""The room core stays sans-I/O and in its layer: crypto/room_*.py imports only
atopos.crypto, protocol/ only atopos.crypto and atopos.protocol (and msgspec), and neither
touches clocks, randomness, files or sockets on its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "atopos"
MODULES = sorted((SRC / "crypto").glob("room_*.py")) + sorted((SRC / "protocol").glob("*.py"))
FORBIDDEN = {"time", "random", "secrets", "os", "socket", "asyncio", "pathlib", "io", "datetime"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_room_modules_import_only_their_layer(path: Path) -> None:
    allowed = (
        ("atopos.crypto",)
        if path.parent.name == "crypto"
        else (
            "atopos.crypto",
            "atopos.protocol",
        )
    )
    for name in _imports(path):
        assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
        if name.startswith("atopos"):
            assert name.startswith(allowed), f"{path.name} imports {name}"


def test_there_are_room_modules_to_check() -> None:
    assert len(MODULES) >= 10
