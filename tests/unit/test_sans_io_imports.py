"""The arrows of the house (docs/architecture.md): `crypto/` imports nothing of Atopos but
itself, `protocol/` only crypto, errors and itself, and neither imports a module that does
I/O, reads a clock or draws randomness."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[2] / "src" / "atopos"
# Standard modules whose use would be I/O, time or randomness (or would reach them).
_FORBIDDEN = {
    "asyncio", "http", "io", "os", "pathlib", "random", "secrets", "select", "selectors",
    "shutil", "socket", "ssl", "subprocess", "sys", "tempfile", "threading", "time", "urllib",
    "httpx", "websockets", "redis", "sqlite3", "starlette", "uvicorn",
}  # fmt: skip
_OURS = {
    "crypto": {"atopos.crypto"},
    "protocol": {"atopos.crypto", "atopos.errors", "atopos.protocol"},
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(_OURS))
def test_a_sans_io_package_imports_only_what_it_may(package: str) -> None:
    files = sorted((SRC / package).glob("*.py"))
    assert files
    for path in files:
        for name in _imports(path):
            top = name.split(".")[0]
            assert top not in _FORBIDDEN, f"{path.name} imports {name}"
            if top == "atopos":
                allowed = _OURS[package]
                assert any(name == a or name.startswith(a + ".") for a in allowed), (
                    f"{path.name} imports {name}"
                )
