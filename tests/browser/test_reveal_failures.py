"""What the reveal page says when opening goes wrong or is over: a download cut off on the way
is told apart from a key that does not open the secret; leaving a revealed page asks first;
a reload after the view was spent says that links work once."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import DESKTOP, NewContext
from tests.browser.cutting_proxy import CuttingProxy
from tests.browser.harness import (
    TIMEOUT_MS,
    CreatedLinks,
    Guard,
    create_text_secret,
    read_links,
    reveal_text,
    screenshot,
    wait_for_state,
)
from tests.servers import ServerProcess

CUT_OFF_TITLE = "The download was cut off"
# The key-knowledge proof's refusal at the ticket step (nothing spent).
REFUSED_KEY_TITLE = "Wrong key or passphrase"


def create_file_secret(
    page: Page, origin: str, content: bytes, *, passphrase: str | None = None
) -> CreatedLinks:
    page.goto(f"{origin}/")
    wait_for_state(page, "compose")
    page.get_by_text("File", exact=True).click()
    page.locator("#secret-file").set_input_files(
        {"name": "report.bin", "mimeType": "application/octet-stream", "buffer": content}
    )
    if passphrase is not None:
        page.get_by_label("Passphrase").fill(passphrase)
    page.get_by_role("button", name="Encrypt and create link").click()
    wait_for_state(page, "done")
    return read_links(page)


@pytest.fixture
def proxied_page(browser: Browser) -> Iterator[tuple[Page, Guard, list[CuttingProxy]]]:
    """A guarded page for a proxy the test starts (its origin is the proxy's)."""
    proxies: list[CuttingProxy] = []
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(TIMEOUT_MS)
    guard = Guard("")
    guard.watch(context)
    yield context.new_page(), guard, proxies
    context.close()
    # Chromium reports the failed body once on the console; nothing else may go wrong.
    guard.console_errors = [e for e in guard.console_errors if "ERR_" not in e]
    guard.check()


@pytest.mark.parametrize(
    ("size", "cut_after", "passphrase"),
    [
        (200, 100, None),  # inside the only chunk: nothing was authenticated yet
        (300 * 1024, 150 * 1024, None),  # after the first chunks proved the key
        (300 * 1024, 100 * 1024, "cut short"),  # with the passphrase typed first
    ],
)
def test_a_cut_off_download_says_so(
    new_context: NewContext,
    web_server: ServerProcess,
    proxied_page: tuple[Page, Guard, list[CuttingProxy]],
    size: int,
    cut_after: int,
    passphrase: str | None,
) -> None:
    creator, _ = new_context()
    links = create_file_secret(
        creator.new_page(), web_server.url, os.urandom(size), passphrase=passphrase
    )
    page, guard, _ = proxied_page
    with CuttingProxy(web_server.url, body_bytes=cut_after) as proxy:
        guard.origin = proxy.url
        page.goto(links.share.replace(web_server.url, proxy.url))
        page.get_by_role("button", name="Reveal secret").click()
        if passphrase is not None:
            wait_for_state(page, "passphrase")
            page.get_by_label("Passphrase").fill(passphrase)
            page.get_by_role("button", name="Unlock and reveal").click()
        wait_for_state(page, "failed")
        assert proxy.cuts == 1
    expect(page.locator("#failed-title")).to_have_text(CUT_OFF_TITLE)
    message = page.locator("#failed-message")
    expect(message).to_contain_text("before the whole secret arrived")
    expect(message).to_contain_text("not a wrong link")
    expect(message).to_contain_text("This view has been used.")
    screenshot(page, f"reveal-cut-off-{size}")


def test_a_wrong_key_says_so(new_context: NewContext, web_server: ServerProcess) -> None:
    """A mistyped link is refused at the ticket step by the key-knowledge proof
    (docs/protocol/access.md): the page says the key or passphrase is wrong before any reveal,
    and the view is still there for the right link."""
    creator, _ = new_context()
    links = create_text_secret(creator.new_page(), web_server.url, "opened by the right key only")
    link, key = links.share.split("#")
    # Another valid 32-byte key: the first character changed, as a mistyped link would be.
    wrong = link + "#" + ("B" if key[0] != "B" else "C") + key[1:]
    reader, guard = new_context()
    guard.allow_http_error(403)  # the refused ticket
    page = reader.new_page()
    reveals: list[str] = []
    page.on(
        "request",
        lambda request: reveals.append(request.url) if request.url.endswith("/reveal") else None,
    )
    page.goto(wrong)
    page.get_by_role("button", name="Reveal secret").click()
    wait_for_state(page, "failed")
    expect(page.locator("#failed-title")).to_have_text(REFUSED_KEY_TITLE)
    message = page.locator("#failed-message")
    expect(message).to_contain_text("Nothing was used")
    expect(message).not_to_contain_text("network")
    expect(message).not_to_contain_text("This view has been used")
    screenshot(page, "reveal-wrong-key")
    # Refused before the reveal step: no reveal request was made, and the view is not spent.
    assert reveals == []
    other, _ = new_context()
    assert reveal_text(other.new_page(), links.share) == "opened by the right key only"


def test_leaving_a_revealed_page_asks_first(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    creator, _ = new_context()
    links = create_text_secret(creator.new_page(), web_server.url, "read me before you go")
    reader, _ = new_context()
    page = reader.new_page()
    assert reveal_text(page, links.share) == "read me before you go"
    with page.expect_event("dialog") as dialog_info:
        page.close(run_before_unload=True)
    dialog = dialog_info.value
    assert dialog.type == "beforeunload"
    dialog.dismiss()
    # Staying keeps the secret on the page.
    expect(page.locator("#secret-output")).to_have_text("read me before you go")


def test_a_reload_after_revealing_explains_itself(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    creator, _ = new_context()
    links = create_text_secret(creator.new_page(), web_server.url, "once only")
    reader, _ = new_context()
    page = reader.new_page()
    reveal_text(page, links.share)
    page.on("dialog", lambda dialog: dialog.accept())
    page.reload()
    wait_for_state(page, "used")
    expect(page.locator('[data-state="used"]')).to_contain_text(
        "This link was already opened or has expired; links work once."
    )
    screenshot(page, "reveal-reloaded-after-use")
    # A reload before anything was spent still says the key is missing, not that it was used.
    other = create_text_secret(creator.new_page(), web_server.url, "not opened yet")
    page = reader.new_page()
    page.goto(other.share)
    wait_for_state(page, "ready")
    page.reload()
    wait_for_state(page, "broken")
