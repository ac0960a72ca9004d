"""Split links in Chromium: shamir.js against tests/vectors/shamir.json (the Python side runs
the same file in tests/unit/test_shamir_vectors.py), and the reveal page opened with one
split link asks for the others, combines them here and reveals; alone, it spends nothing."""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.conftest import NewContext
from tests.browser.harness import open_vector_page, screenshot, state, wait_for_state
from tests.servers import ATOPOS, ServerProcess

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
SHAMIR: dict[str, Any] = json.loads((VECTORS / "shamir.json").read_text(encoding="utf-8"))

SPLIT_CREATE = (ATOPOS, "secret", "create", "--split", "2/3", "--json", "--server")

_JS_SPLIT = """
async (vector) => {
  const shamir = await import("/static/js/shamir.js");
  const links = await import("/static/js/links.js");
  const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  const bytesOf = (text) => Uint8Array.from(text.match(/../g), (h) => parseInt(h, 16));
  const drawn = bytesOf(vector.random_hex);
  let position = 0;
  const randomBytes = (size) => drawn.slice(position, (position += size));
  const key = bytesOf(vector.key_hex);
  const made = shamir.splitKey(key, vector.threshold, vector.count, randomBytes);
  const parsed = vector.links.map((link) => links.fragmentShare(new URL(link).hash.slice(1)));
  const combined = [];
  const pick = (start, chosen) => {
    if (chosen.length === vector.threshold) {
      combined.push(hex(shamir.combineKey(chosen)));
      return;
    }
    for (let i = start; i < parsed.length; i++) pick(i + 1, [...chosen, parsed[i]]);
  };
  pick(0, []);
  return {
    shares: made.map((share) => hex(shamir.shareBytes(share))),
    combined: [...new Set(combined)],
    short: shamir.sharesMissing(parsed.slice(0, vector.threshold - 1)),
  };
}
"""

_JS_INVALID = """
async (vector) => {
  const shamir = await import("/static/js/shamir.js");
  const bytesOf = (text) => Uint8Array.from(text.match(/../g), (h) => parseInt(h, 16));
  try {
    const shares = vector.shares_hex.map((text) => shamir.parseShare(bytesOf(text)));
    return { missing: shamir.sharesMissing(shares) };
  } catch (error) {
    return { error: error.message, isInvalidShares: error instanceof shamir.InvalidShares };
  }
}
"""


@pytest.fixture(scope="module")
def vector_page(browser: Browser, web_server: ServerProcess) -> Iterator[Page]:
    with open_vector_page(browser, web_server.url, "() => {}") as page:
        yield page


@pytest.mark.parametrize("vector", SHAMIR["splits"], ids=[v["name"] for v in SHAMIR["splits"]])
def test_shamir_js_split_vector(vector_page: Page, vector: dict[str, Any]) -> None:
    result = vector_page.evaluate(_JS_SPLIT, vector)
    assert result["shares"] == vector["shares_hex"]
    assert result["combined"] == [vector["key_hex"]]
    assert result["short"] == 1


@pytest.mark.parametrize("vector", SHAMIR["invalid"], ids=[v["name"] for v in SHAMIR["invalid"]])
def test_shamir_js_invalid_vector(vector_page: Page, vector: dict[str, Any]) -> None:
    result = vector_page.evaluate(_JS_INVALID, vector)
    if "missing" in vector:
        assert result == {"missing": vector["missing"]}
    else:
        assert result["isInvalidShares"] is True
        assert vector["says"] in result["error"]


def create_split(server: ServerProcess, views: int) -> tuple[list[str], str]:
    created = subprocess.run(
        [*SPLIT_CREATE, server.url, "--views", str(views)],
        input=b"split in the browser",
        capture_output=True,
        timeout=60,
        check=True,
    )
    record = json.loads(created.stdout)
    return record["links"], record["manage_link"]


def views_left(manage_link: str) -> bytes:
    status = subprocess.run(
        [ATOPOS, "secret", "status", manage_link], capture_output=True, timeout=60, check=True
    )
    return status.stdout.splitlines()[0]


def test_each_pair_of_three_links_opens_the_secret(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    links, manage_link = create_split(web_server, views=3)
    for number, (opened, pasted) in enumerate(itertools.combinations(links, 2)):
        context, _ = new_context()
        page = context.new_page()
        page.goto(opened)
        wait_for_state(page, "shares")
        assert page.locator("#share-fields input").count() == 1
        if number == 0:
            screenshot(page, "split-link-asks-for-more")
        page.get_by_label("Another split link (1 of 1)").fill(pasted)
        page.get_by_role("button", name="Combine the links").click()
        wait_for_state(page, "ready")
        page.get_by_role("button", name="Reveal secret").click()
        wait_for_state(page, "text")
        assert page.locator("#secret-output").text_content() == "split in the browser"
    status = subprocess.run(
        [ATOPOS, "secret", "status", manage_link], capture_output=True, timeout=60, check=True
    )
    lines = status.stdout.decode().splitlines()
    # Three views, three pairs: all spent, and the receipts count three views.
    assert lines[0] == "Views left: 0 (every view was spent; the secret is gone)"
    assert sum(line.startswith("Viewed at: ") for line in lines) == 3


def test_one_link_alone_says_how_many_more_and_spends_nothing(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    links, manage_link = create_split(web_server, views=1)
    other, _ = create_split(web_server, views=1)
    context, guard = new_context()
    page = context.new_page()
    page.goto(links[1])
    wait_for_state(page, "shares")
    lede = page.locator("#shares-lede").text_content() or ""
    assert "split this secret into 3 links" in lede
    assert "any 2 of them open it" in lede
    assert "paste 1 more" in lede
    page.get_by_role("button", name="Combine the links").click()
    alert = page.locator("#shares-error")
    assert alert.text_content() == "1 more split link is needed. Nothing has been used."
    page.get_by_label("Another split link (1 of 1)").fill(links[1])
    page.get_by_role("button", name="Combine the links").click()
    assert alert.text_content() == "1 more split link is needed. Nothing has been used."
    page.get_by_label("Another split link (1 of 1)").fill(other[0])
    page.get_by_role("button", name="Combine the links").click()
    assert alert.text_content() == "One of the pasted links is for a different secret."
    assert page.locator(state(page, "shares")).is_visible()
    assert not any("/api/" in request for request in guard.requests), guard.requests
    assert views_left(manage_link) == b"Views left: 1"


def test_a_pasted_link_of_another_server_is_refused(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    # The CLI refuses split links that name different servers (docs/protocol/links.md 2.2);
    # the page does the same, though the secret id and the share match.
    links, manage_link = create_split(web_server, views=1)
    context, guard = new_context()
    page = context.new_page()
    page.goto(links[0])
    wait_for_state(page, "shares")
    elsewhere = links[1].replace("127.0.0.1", "localhost", 1)
    assert elsewhere != links[1]
    page.get_by_label("Another split link (1 of 1)").fill(elsewhere)
    page.get_by_role("button", name="Combine the links").click()
    alert = page.locator("#shares-error")
    assert alert.text_content() == "One of the pasted links is for a different server."
    assert page.locator(state(page, "shares")).is_visible()
    assert not any("/api/" in request for request in guard.requests), guard.requests
    assert views_left(manage_link) == b"Views left: 1"
