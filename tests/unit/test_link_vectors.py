"""tests/vectors/links.json against atopos.client.links (the browser tests run the same file
against links.js): valid links parse to the stated parts and print back canonically, invalid
ones are refused with the stated sentence."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

import pytest

from atopos.client.links import InvalidLink, parse_manage_link, parse_share_link

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
LINKS: list[dict[str, Any]] = json.loads((VECTORS / "links.json").read_text(encoding="utf-8"))[
    "vectors"
]


@pytest.mark.parametrize("vector", LINKS, ids=[v["name"] for v in LINKS])
def test_link_vector(vector: dict[str, Any]) -> None:
    parse = parse_share_link if vector["kind"] == "share" else parse_manage_link
    if not vector["valid"]:
        with pytest.raises(InvalidLink) as caught:
            parse(vector["link"])
        assert vector["says"] in caught.value.message
        return
    link = parse(vector["link"])
    assert link.server == vector["server"]
    assert link.secret_id == vector["secret_id"]
    if vector["kind"] == "share":
        assert link.link_key.hex() == vector["link_key_hex"]  # type: ignore[union-attr]
    else:
        assert link.manage_token == vector["manage_token"]  # type: ignore[union-attr]
    assert str(link) == vector["canonical"]


def test_the_vectors_damage_every_part() -> None:
    assert {v["part"] for v in LINKS if not v["valid"]} == {"id", "fragment", "url"}
    assert {v["kind"] for v in LINKS if v["valid"]} == {"share", "manage"}


def test_the_file_is_what_its_generator_writes() -> None:
    generator = runpy.run_path(str(VECTORS / "generate_links_vectors.py"))
    assert generator["build"]()["vectors"] == LINKS
