"""The reveal page asks for a passphrase before it spends a view: the challenge says
`has_passphrase`, and no ticket is asked for until the reader has typed one. A wrong one is
still tried again on the ciphertext the tab holds, without a second view."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import NewContext
from tests.browser.harness import (
    Guard,
    create_text_secret,
    read_links,
    screenshot,
    wait_for_state,
)
from tests.servers import ServerProcess

SECRET = "behind a passphrase, asked first"
PASSPHRASE = "correct horse"


# A slow network: every read of a response body yields at most 4 KiB, so the envelope's header,
# its first chunk and the rest arrive in separate reads (on loopback one read brings it all).
SMALL_READS = """
const read = ReadableStreamDefaultReader.prototype.read;
const rests = new WeakMap();
ReadableStreamDefaultReader.prototype.read = async function () {
  let rest = rests.get(this);
  if (rest === undefined || rest.length === 0) {
    const result = await read.call(this);
    if (result.done) return result;
    rest = result.value;
  }
  rests.set(this, rest.subarray(4096));
  return { done: false, value: rest.subarray(0, 4096) };
};
"""


def views_left(server: ServerProcess, manage_link: str) -> int:
    """The secret's views left, read through its manage link as the CLI would."""
    parts = urlsplit(manage_link)
    secret_id = parts.path.rsplit("/", 1)[-1]
    response = httpx.get(
        f"{server.url}/api/v1/secrets/{secret_id}/status",
        headers={"authorization": f"Bearer {parts.fragment}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    left: int = response.json()["views_left"]
    return left


def api_calls(guard: Guard, step: str) -> list[str]:
    """The POSTs this context made to one step of the access path (challenge, ticket, reveal)."""
    return [
        request
        for request in guard.requests
        if request.startswith("POST ") and request.endswith(f"/{step}")
    ]


def open_until_asked(page: Page, link: str) -> None:
    """Open the share link, click Reveal and wait for the passphrase question."""
    page.goto(link)
    wait_for_state(page, "ready")
    page.get_by_role("button", name="Reveal secret").click()
    wait_for_state(page, "passphrase")


def test_passphrase_is_asked_before_any_view_is_spent(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    creator, _ = new_context()
    links = create_text_secret(
        creator.new_page(), web_server.url, SECRET, views=2, passphrase=PASSPHRASE
    )
    # The challenge walk: no ticket request before the passphrase (a stamp is one).
    reader, guard = new_context(stamp=False)
    page = reader.new_page()
    open_until_asked(page, links.share)
    screenshot(page, "reveal-passphrase-first")

    # The challenge was asked (that is where `has_passphrase` comes from), nothing after it.
    assert len(api_calls(guard, "challenge")) == 1
    assert api_calls(guard, "ticket") == []
    assert api_calls(guard, "reveal") == []
    assert views_left(web_server, links.manage) == 2
    assert SECRET not in (page.text_content("main") or "")

    # The page says why it asks now, next to the field, and the field has the focus.
    expect(page.locator("#passphrase-lede")).to_contain_text("Enter it before revealing")
    expect(page.locator("#passphrase-lede")).to_contain_text("uses up a view")
    described_by = page.get_attribute("#reveal-passphrase", "aria-describedby") or ""
    assert "passphrase-lede" in described_by.split()
    assert page.evaluate("document.activeElement.id") == "reveal-passphrase"
    # Nothing is held in the tab yet, so the page does not claim it is.
    expect(page.locator("#passphrase-held")).to_be_hidden()

    # An empty passphrase is refused in place; still no ticket, still two views.
    page.keyboard.press("Enter")
    expect(page.locator("#passphrase-error")).to_have_text("Type the passphrase first.")
    wait_for_state(page, "passphrase")
    assert api_calls(guard, "ticket") == []
    assert api_calls(guard, "reveal") == []
    assert views_left(web_server, links.manage) == 2

    page.keyboard.type(PASSPHRASE)
    page.keyboard.press("Enter")
    wait_for_state(page, "text")
    assert page.locator("#secret-output").text_content() == SECRET
    # The one-shot ticket step revealed it (docs/protocol/access.md, "One shot").
    assert len(api_calls(guard, "ticket")) == 1
    assert api_calls(guard, "reveal") == []
    assert views_left(web_server, links.manage) == 1


def test_wrong_passphrase_then_right_one_spends_one_view(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    creator, _ = new_context()
    links = create_text_secret(
        creator.new_page(), web_server.url, SECRET, views=2, passphrase=PASSPHRASE
    )
    # The challenge walk: it counts the ticket steps (a stamp is one more).
    reader, guard = new_context(stamp=False)
    guard.allow_http_error(403)  # the ticket refused for the wrong passphrase
    page = reader.new_page()
    open_until_asked(page, links.share)

    page.get_by_label("Passphrase").fill("wrong horse")
    page.get_by_role("button", name="Unlock").click()
    # The key-knowledge proof (docs/protocol/access.md): the wrong passphrase is refused at
    # the ticket step, so no view is spent and the reader is simply asked again.
    expect(page.locator("#passphrase-error")).to_contain_text("does not open")
    expect(page.locator("#passphrase-error")).to_contain_text("Wrong key or passphrase")
    wait_for_state(page, "passphrase")
    expect(page.locator("#passphrase-held")).to_be_hidden()
    screenshot(page, "reveal-passphrase-first-wrong")
    assert SECRET not in (page.text_content("main") or "")
    assert len(api_calls(guard, "reveal")) == 0
    assert views_left(web_server, links.manage) == 2

    page.get_by_label("Passphrase").fill(PASSPHRASE)
    page.get_by_role("button", name="Unlock and reveal").click()
    wait_for_state(page, "text")
    assert page.locator("#secret-output").text_content() == SECRET
    # One refused ticket step, one that revealed (one shot); one view.
    assert len(api_calls(guard, "ticket")) == 2
    assert api_calls(guard, "reveal") == []
    assert views_left(web_server, links.manage) == 1


@pytest.mark.parametrize("first_try", ["wrong horse", PASSPHRASE])
def test_many_chunk_file_behind_a_passphrase_spends_one_view(
    new_context: NewContext, web_server: ServerProcess, tmp_path: Path, first_try: str
) -> None:
    # Several 64 KiB chunks: the first is authenticated while the download still runs.
    content = os.urandom(300 * 1024)
    source = tmp_path / "keys.bin"
    source.write_bytes(content)
    creator, _ = new_context()
    page = creator.new_page()
    page.goto(f"{web_server.url}/")
    page.get_by_text("File", exact=True).click()
    page.locator("#secret-file").set_input_files(str(source))
    page.get_by_label("Views allowed").fill("2")
    page.get_by_label("Passphrase").fill(PASSPHRASE)
    page.get_by_role("button", name="Encrypt and create link").click()
    wait_for_state(page, "done")
    links = read_links(page)

    # The challenge walk: it counts the ticket steps (a stamp is one more).
    reader, guard = new_context(stamp=False)
    guard.allow_http_error(403)  # a ticket refused for a wrong passphrase
    page = reader.new_page()
    page.add_init_script(SMALL_READS)
    open_until_asked(page, links.share)
    assert api_calls(guard, "reveal") == []
    assert views_left(web_server, links.manage) == 2
    page.get_by_label("Passphrase").fill(first_try)
    page.get_by_role("button", name="Unlock").click()
    if first_try != PASSPHRASE:
        # Refused at the ticket step: nothing spent, asked again.
        expect(page.locator("#passphrase-error")).to_contain_text("does not open")
        expect(page.locator("#passphrase-held")).to_be_hidden()
        assert api_calls(guard, "reveal") == []
        assert views_left(web_server, links.manage) == 2
        page.get_by_label("Passphrase").fill(PASSPHRASE)
        page.get_by_role("button", name="Unlock").click()
    wait_for_state(page, "file")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Save file").click()
    saved = tmp_path / "saved.bin"
    download_info.value.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).digest() == hashlib.sha256(content).digest()
    # The one-shot ticket step revealed it, after one refused ticket step for a wrong try.
    assert len(api_calls(guard, "ticket")) == (1 if first_try == PASSPHRASE else 2)
    assert api_calls(guard, "reveal") == []
    assert views_left(web_server, links.manage) == 1


def test_secret_without_passphrase_is_not_asked_for_one(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    creator, _ = new_context()
    links = create_text_secret(creator.new_page(), web_server.url, "no passphrase", views=2)
    reader, guard = new_context()
    page = reader.new_page()
    # Every state the page shows, recorded in the page from its very start.
    page.add_init_script(
        """window.__states = [];
        new MutationObserver(() => window.__states.push(document.body.dataset.currentState))
          .observe(document, {
            subtree: true, attributes: true, attributeFilter: ["data-current-state"] });"""
    )
    page.goto(links.share)
    wait_for_state(page, "ready")
    page.get_by_role("button", name="Reveal secret").click()
    wait_for_state(page, "text")
    assert page.locator("#secret-output").text_content() == "no passphrase"
    states: list[str] = page.evaluate("window.__states")
    assert states[-1] == "text"
    assert "passphrase" not in states
    # One walk: the stamp revealed it in one request, no challenge was asked for.
    assert api_calls(guard, "challenge") == []
    assert len(api_calls(guard, "ticket")) == 1
    assert views_left(web_server, links.manage) == 1
