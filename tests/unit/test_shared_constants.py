"""tests/vectors/constants.json against the Python side: every constant that has a browser
twin has the value the file states (tests/browser/test_shared_vectors.py checks the JS side
against the same file, so neither can drift alone)."""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path
from typing import Any

import pytest

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
CONSTANTS: list[dict[str, Any]] = json.loads((VECTORS / "constants.json").read_text())["constants"]


def python_value(reference: str) -> object:
    """`module:Name.attr` resolved; a dataclass field named on its class gives its default."""
    module_name, _, path = reference.partition(":")
    value: Any = importlib.import_module(module_name)
    for name in path.split("."):
        if isinstance(value, type) and dataclasses.is_dataclass(value):
            value = {field.name: field.default for field in dataclasses.fields(value)}[name]
        else:
            value = getattr(value, name)
    if isinstance(value, bytes):
        # A label's 0x00 separator is not part of the shared value (see the file's description).
        return value.removesuffix(b"\x00").decode("ascii")
    return value


@pytest.mark.parametrize(
    ("name", "reference", "value"),
    [(c["name"], ref, c["value"]) for c in CONSTANTS for ref in c["python"]],
)
def test_python_constant_matches_the_shared_file(name: str, reference: str, value: object) -> None:
    actual = python_value(reference)
    assert actual == value, f"{name}: {reference} is {actual!r}, constants.json says {value!r}"
    assert type(actual) is type(value), name


def test_every_constant_has_both_twins_and_a_unique_name() -> None:
    names = [c["name"] for c in CONSTANTS]
    assert len(names) == len(set(names))
    assert all(c["python"] and c["js"] for c in CONSTANTS)
