"""The house's rules, checked on the source: layers point one way (docs/architecture.md),
`crypto/` and `protocol/` do no I/O, and only atopos/clock.py and atopos/randomness.py read
the time or draw random bytes."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import atopos

PACKAGE = Path(atopos.__file__).parent
# Our packages each layer may import (beside itself and the shared leaves below).
ALLOWED: dict[str, frozenset[str]] = {
    "crypto": frozenset(),
    "protocol": frozenset({"crypto"}),
    "storage": frozenset({"crypto", "protocol"}),
    "server": frozenset({"crypto", "protocol", "storage", "web"}),
    "client": frozenset({"crypto", "protocol"}),
    "cli": frozenset({"client", "crypto", "protocol", "server", "mixnet"}),
    "mixnet": frozenset({"crypto", "protocol", "client"}),
    "web": frozenset(),
}
# Leaves every layer but crypto and protocol may use: the error roots, clock and randomness.
SHARED_LEAVES = frozenset({"errors", "clock", "randomness", "__init__"})
# What sans-I/O code must not import: sockets, files, processes, clocks, the OS's randomness
# (urllib.parse is parsing, so allowed; urllib.request is not).
IO_MODULES = frozenset(
    {
        "asyncio",
        "httpx",
        "io",
        "os",
        "pathlib",
        "random",
        "redis",
        "secrets",
        "select",
        "shutil",
        "socket",
        "sqlite3",
        "ssl",
        "subprocess",
        "threading",
        "time",
        "urllib.request",
        "http.client",
        "websockets",
    }
)
TIME_AND_RANDOMNESS = (
    ("time", "time"),
    ("time", "monotonic"),
    ("time", "perf_counter"),
    ("time", "time_ns"),
    ("time", "monotonic_ns"),
    ("os", "urandom"),
    ("os", "getrandom"),
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
)
THE_TWO_SOURCES = {PACKAGE / "clock.py", PACKAGE / "randomness.py"}


def _modules() -> Iterator[Path]:
    yield from sorted(PACKAGE.rglob("*.py"))


def _layer(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else path.stem


def _imports(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_layers_point_one_way() -> None:
    wrong = []
    for path in _modules():
        layer = _layer(path)
        if layer not in ALLOWED:
            continue
        allowed = ALLOWED[layer] | {layer}
        if layer not in ("crypto", "protocol"):
            allowed |= SHARED_LEAVES
        for name in _imports(ast.parse(path.read_text())):
            parts = name.split(".")
            if parts[0] == "atopos" and len(parts) > 1 and parts[1] not in allowed:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert wrong == []


@pytest.mark.parametrize("layer", ["crypto", "protocol"])
def test_sans_io_layers_import_no_io(layer: str) -> None:
    wrong = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in _modules()
        if _layer(path) == layer
        for name in _imports(ast.parse(path.read_text()))
        if name.split(".")[0] in IO_MODULES or ".".join(name.split(".")[:2]) in IO_MODULES
    ]
    assert wrong == []


def _reads_time_or_randomness(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in TIME_AND_RANDOMNESS:
                yield f"{node.value.id}.{node.attr}"
        elif isinstance(node, ast.Attribute) and node.attr in ("now", "utcnow", "today"):
            if isinstance(node.value, ast.Attribute) and node.value.attr in ("datetime", "date"):
                yield f"datetime.{node.attr}"
        elif isinstance(node, ast.ImportFrom) and node.module in ("time", "os", "datetime"):
            for alias in node.names:
                if (node.module, alias.name) in TIME_AND_RANDOMNESS:
                    yield f"from {node.module} import {alias.name}"
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names = [node.module] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in getattr(node, "names", [])]
            if isinstance(node, ast.Import) and any(n in ("random", "secrets") for n in names):
                yield "import random/secrets"
            if isinstance(node, ast.ImportFrom) and node.module in ("random", "secrets"):
                yield f"from {node.module} import ..."


def test_only_the_clock_and_randomness_modules_read_time_or_draw_random_bytes() -> None:
    wrong = [
        f"{path.relative_to(PACKAGE)}: {use}"
        for path in _modules()
        if path not in THE_TWO_SOURCES
        for use in _reads_time_or_randomness(ast.parse(path.read_text()))
    ]
    assert wrong == []
