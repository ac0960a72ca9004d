"""The vendored npm files are exactly the ones recorded in src/atopos/web/vendor/README.md."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

VENDOR = Path(__file__).resolve().parents[2] / "src" / "atopos" / "web" / "vendor"
_ROW = re.compile(
    r"^\| `(?P<file>[^`]+)` \| (?P<package>[^|]+) \| (?P<version>[0-9][^ |]*) \| "
    r"(?P<integrity>[^|]+) \| `(?P<sha256>[0-9a-f]{64})` \|$"
)


def recorded() -> dict[str, dict[str, str]]:
    rows = {}
    for line in (VENDOR / "README.md").read_text(encoding="utf-8").splitlines():
        if match := _ROW.match(line):
            rows[match["file"]] = match.groupdict()
    return rows


RECORDED = recorded()


def test_the_table_lists_every_vendored_file() -> None:
    on_disk = {
        path.relative_to(VENDOR).as_posix()
        for path in VENDOR.rglob("*")
        if path.is_file() and path.name != "README.md"
    }
    assert on_disk, "nothing vendored?"
    assert on_disk == set(RECORDED)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_vendored_file_matches_its_recorded_hash(name: str) -> None:
    row = RECORDED[name]
    assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == row["sha256"]
    # The folder names the exact version, so an update cannot forget the table.
    assert name.split("/")[0].endswith(f"-{row['version']}")
    integrity = row["integrity"].strip()
    assert integrity == "(same tarball)" or re.fullmatch(r"`sha512-[A-Za-z0-9+/]{86}==`", integrity)
