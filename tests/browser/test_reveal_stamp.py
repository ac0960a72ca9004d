"""The reveal page reveals in ONE request with a stamp (docs/protocol/access.md, "Stamp: a
reveal in one request"), counted by a recording wrapper around a real in-process server
(tests/older_servers.py); a passphrase secret's stamp is answered with a challenge and the
page asks for the passphrase, then walks the challenge way; a server from before stamps
(422) is walked the challenge way; a mistyped link's stamp is refused as wrong_key and
spends nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from atopos.client.api import SecretsApi
from atopos.client.links import parse_share_link
from atopos.client.secrets import create_secret, reveal_secret
from atopos.errors import Gone
from atopos.server.config import ServerConfig, rate_limits
from tests.browser.conftest import DESKTOP
from tests.browser.harness import TIMEOUT_MS, Guard, reveal_text, wait_for_state
from tests.older_servers import RecordingServer, StamplessServer
from tests.servers import ManualClock, in_process_server


@dataclasses.dataclass
class Served:
    url: str
    wrapper: RecordingServer
    page: Page


def _served(
    browser: Browser, tmp_path: Path, make: Callable[[], RecordingServer], *statuses: int
) -> Iterator[Served]:
    wrapper = make()
    # The server's clock is this machine's, as the page's is.
    config = ServerConfig(data_dir=tmp_path / "data", pow_bits=4, **rate_limits(0))
    with in_process_server(config, ManualClock(), wrap=wrapper.around) as url:
        context = browser.new_context(viewport=DESKTOP)
        context.set_default_timeout(TIMEOUT_MS)
        guard = Guard(url)
        for status in statuses:
            guard.allow_http_error(status)
        guard.watch(context)
        try:
            yield Served(url, wrapper, context.new_page())
        finally:
            context.close()
        guard.check()


@pytest.fixture
def served(browser: Browser, tmp_path: Path) -> Iterator[Served]:
    """A current server (stamps); 403 is the wrong key's answer."""
    yield from _served(browser, tmp_path, RecordingServer, 403)


@pytest.fixture
def stampless(browser: Browser, tmp_path: Path) -> Iterator[Served]:
    """A server with the one-shot step but from before stamps (422 to a stamp)."""
    yield from _served(browser, tmp_path, StamplessServer, 422)


def _first_step(page: Page) -> str | None:
    """The words of the reveal page's first progress step."""
    return page.locator('[data-step="challenge"]').text_content()


def _create(url: str, content: bytes, passphrase: str | None = None) -> str:
    with SecretsApi(url) as api:
        made = create_secret(api, content, expires_in=600, passphrase=passphrase)
    return str(made.share_link)


def test_the_reveal_page_reveals_in_one_request(served: Served) -> None:
    link = _create(served.url, b"one request")
    served.wrapper.steps.clear()
    assert reveal_text(served.page, link) == "one request"
    assert served.wrapper.steps == ["ticket"]
    # No puzzle was asked of the server: the first step says what happened instead.
    assert _first_step(served.page) == "Preparing the request"
    with SecretsApi(served.url) as api, pytest.raises(Gone):
        reveal_secret(api, parse_share_link(link), bytearray().extend)


def test_a_server_without_stamps_is_walked_the_challenge_way(stampless: Served) -> None:
    link = _create(stampless.url, b"older")
    stampless.wrapper.steps.clear()
    assert reveal_text(stampless.page, link) == "older"
    assert stampless.wrapper.steps == ["ticket", "challenge", "ticket"]
    assert _first_step(stampless.page) == "Asking the server for a puzzle"


def test_a_passphrase_secret_asks_for_it_then_takes_the_challenge_way(served: Served) -> None:
    link = _create(served.url, b"behind a passphrase", passphrase="horse")
    served.wrapper.steps.clear()
    page = served.page
    page.goto(link)
    wait_for_state(page, "ready")
    page.get_by_role("button", name="Reveal secret").click()
    wait_for_state(page, "passphrase")
    # The stamp was answered with a challenge that says so; nothing spent.
    assert served.wrapper.steps == ["ticket"]
    page.get_by_label("Passphrase").fill("horse")
    page.get_by_role("button", name="Unlock and reveal").click()
    wait_for_state(page, "text")
    assert page.locator("#secret-output").text_content() == "behind a passphrase"
    # Typed, the walk asks for a challenge at once: no second stamp.
    assert served.wrapper.steps == ["ticket", "challenge", "ticket"]


def test_a_mistyped_link_is_refused_at_the_stamp_and_spends_nothing(served: Served) -> None:
    link = _create(served.url, b"still here")
    base, key = link.split("#")
    # Another valid 32-byte key: the first character changed, as a mistyped link would be.
    typo = base + "#" + ("B" if key[0] != "B" else "C") + key[1:]
    served.wrapper.steps.clear()
    page = served.page
    page.goto(typo)
    wait_for_state(page, "ready")
    page.get_by_role("button", name="Reveal secret").click()
    wait_for_state(page, "failed")
    expect(page.locator("#failed-title")).to_have_text("Wrong key or passphrase")
    expect(page.locator("#failed-message")).to_contain_text("Nothing was used")
    assert served.wrapper.steps == ["ticket"]
    # The view is still there: the right link reveals it, in one request.
    served.wrapper.steps.clear()
    second = served.page.context.new_page()
    assert reveal_text(second, link) == "still here"
    assert served.wrapper.steps == ["ticket"]
