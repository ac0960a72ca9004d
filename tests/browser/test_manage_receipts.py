"""Reveal receipts on the manage page: it lists the minute of each view spent and, once the
last view burned the secret, still shows them (the server keeps them until expiry)."""

from __future__ import annotations

import json
import subprocess
import time

from playwright.sync_api import expect

from tests.browser.conftest import NewContext
from tests.browser.harness import screenshot, wait_for_state
from tests.servers import ATOPOS, ServerProcess


def cli(*args: str, stdin: bytes = b"") -> bytes:
    done = subprocess.run([ATOPOS, *args], input=stdin, capture_output=True, timeout=60, check=True)
    return done.stdout


def test_manage_page_lists_each_view_and_keeps_them_after_the_last(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    created = cli(
        "--server", web_server.url, "secret", "create", "--views", "2", "--json", stdin=b"r"
    )
    record = json.loads(created)
    context, guard = new_context()
    guard.allow_http_error(404)  # the status of a burned secret, before its receipts
    page = context.new_page()
    page.goto(record["manage_link"])
    wait_for_state(page, "status")
    expect(page.locator("#status-viewed li")).to_have_text(["Not opened yet"])

    minutes = []
    for _ in range(2):
        before = int(time.time()) // 60 * 60
        assert cli("secret", "reveal", record["link"]) == b"r"
        after = int(time.time()) // 60 * 60
        minutes.append((before, after))
        if len(minutes) == 1:
            page.get_by_role("button", name="Refresh").click()
            expect(page.locator("#status-viewed li")).to_have_count(1)

    page = context.new_page()  # a fresh load (the same URL again would only change the hash)
    page.goto(record["manage_link"])
    wait_for_state(page, "gone")  # no ciphertext left, but the minutes are listed
    expect(page.locator("#gone-receipts")).to_be_visible()
    screenshot(page, "manage-receipts-spent")
    shown = page.locator("#spent-viewed li").all_text_contents()
    assert len(shown) == 2
    # The page shows the minutes the server recorded, in this browser's time zone.
    formatted = page.evaluate(
        """(pairs) => pairs.map((pair) => pair.map((minute) => new Date(minute * 1000)
            .toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" })))""",
        minutes,
    )
    for text, candidates in zip(shown, formatted, strict=True):
        assert text in candidates
