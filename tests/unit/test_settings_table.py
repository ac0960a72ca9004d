"""Every operator setting is one row of docs/operations.md's "Node settings" table and one
entry of server/config.py's SETTINGS, with the same default."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from atopos.server.config import SETTINGS, ServerConfig

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
# Read by `atopos serve` itself (a flag), not by ServerConfig.
SERVE_FLAGS = {"ATOPOS_LOG_FORMAT"}
_ROW = re.compile(r"^\| `(ATOPOS_[A-Z_]+)` \| ([^|]*) \|", re.MULTILINE)


def _table() -> dict[str, str]:
    text = OPERATIONS.read_text()
    section = text[text.index("### Node settings") :]
    section = section[: section.index("\n\n", section.index("| variable |"))]
    return {variable: default.strip() for variable, default in _ROW.findall(section)}


def test_the_docs_table_and_the_settings_list_the_same_variables() -> None:
    assert set(_table()) == {s.variable for s in SETTINGS} | SERVE_FLAGS


def test_every_default_in_the_docs_is_the_configs_default() -> None:
    table = _table()
    defaults = {f.name: f.default for f in dataclasses.fields(ServerConfig)}
    checked = 0
    for setting in SETTINGS:
        cell = table[setting.variable]
        if not (cell.startswith("`") and cell.endswith("`")) or len(setting.fields) > 1:
            # A description ("a random key in RAM"), or ATOPOS_RATE_LIMIT, which sets every
            # route class (their own rows are checked).
            continue
        (field,) = setting.fields
        assert setting.parse(cell.strip("`")) == defaults[field], setting.variable
        checked += 1
    assert checked >= 20
