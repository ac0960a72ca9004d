"""The pages over Tor, on the private Tor network: a Chromium whose only way out is the
network's SOCKS port (`--proxy-server=socks5://…`, names resolved by Tor: the host resolver
rules make every local lookup fail) opens a node's .onion address, reveals a secret there and
talks in a room with a Python member (`atopos room join --tor --script`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bench.harness import end_process
from playwright.sync_api import Browser, BrowserType, Page, expect
from playwright.sync_api import Error as PlaywrightError

from tests.browser.harness import TIMEOUT_MS, Guard, reveal_text
from tests.browser.test_room_pages import _join, _send, _state
from tests.integration.test_room_cli import ScriptClient, epoch_with
from tests.integration.test_tor_onion import (
    OnionServer,
    atopos_over_tor,
    socks,
    start_onion_server,
)
from tests.integration.test_tor_rooms import room_links
from tests.tor_network import TorNetwork, tor_network  # noqa: F401 (the fixture)

# A new onion service's hand-over alone may take _REACH_TIMEOUT (test_tor_onion.py), on top
# of the network's start and the publication: more than pytest-timeout's default.
pytestmark = pytest.mark.timeout(600)

# Onion circuits on a loopback network are quick, but a first one takes a few seconds.
TOR_TIMEOUT_MS = 2 * TIMEOUT_MS


@pytest.fixture(scope="module")
def onion_node(
    tor_network: TorNetwork,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OnionServer]:
    server = start_onion_server(tor_network, tmp_path_factory.mktemp("onion-pages"))
    try:
        yield server
    finally:
        end_process(server.process, grace=15)


@pytest.fixture(scope="module")
def tor_browser(
    browser_type: BrowserType,
    browser_type_launch_args: dict[str, Any],
    tor_network: TorNetwork,  # noqa: F811
    onion_node: OnionServer,
) -> Iterator[Browser]:
    """Chromium through the network's SOCKS port only, the onion a secure context as in
    Tor Browser. Chromium hands names to a SOCKS5 proxy unresolved; the resolver rules make
    sure nothing else is looked up here."""
    socks_port = tor_network.socks_url.rsplit(":", 1)[1]
    args = [
        *browser_type_launch_args["args"],
        f"--proxy-server=socks5://127.0.0.1:{socks_port}",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        f"--unsafely-treat-insecure-origin-as-secure={onion_node.onion_url}",
    ]
    browser = browser_type.launch(**{**browser_type_launch_args, "args": args})
    try:
        yield browser
    finally:
        browser.close()


def _reach(page: Page, onion_url: str, attempts: int = 3) -> None:
    """Load the onion's front page until Tor carries it: this browser's first circuit to
    the service can fail on the small test network (a CI run's page load got
    ERR_SOCKS_CONNECTION_FAILED, the CLI's just before it had gone through), and a Tor
    Browser user would reload. Later requests ride the circuit this one built. (A page, not
    `/healthz`: for a JSON document Chromium asks `/favicon.ico`, a 404 the guard counts.)"""
    for attempt in range(attempts):
        try:
            answer = page.goto(f"{onion_url}/")
        except PlaywrightError as error:
            if "ERR_SOCKS_CONNECTION_FAILED" not in str(error) or attempt == attempts - 1:
                raise
            continue
        assert answer is not None
        assert answer.status == 200
        return


def test_a_proxied_chromium_reveals_a_secret_and_talks_in_a_room_on_the_onion(
    tor_browser: Browser,
    tor_network: TorNetwork,  # noqa: F811
    onion_node: OnionServer,
    tmp_path: Path,
) -> None:
    context = tor_browser.new_context()
    context.set_default_timeout(TOR_TIMEOUT_MS)
    guard = Guard(onion_node.onion_url)
    guard.watch(context)
    page = context.new_page()

    # Without the proxy a .onion name means nothing: reaching it proves the way.
    created = atopos_over_tor(
        tor_network,
        "secret-creator",
        "--tor",
        "--server",
        onion_node.onion_url,
        "secret",
        "create",
        stdin=b"through the onion",
    )
    assert created.returncode == 0, created.stderr
    link = created.stdout.decode().strip()
    assert link.startswith(f"{onion_node.onion_url}/s/")
    _reach(page, onion_node.onion_url)
    assert reveal_text(page, link) == "through the onion"

    home = tmp_path / "home"
    home.mkdir()
    made = atopos_over_tor(
        tor_network,
        "pages-room-creator",
        "--tor",
        "--server",
        onion_node.onion_url,
        "room",
        "create",
        home=home,
    )
    assert made.returncode == 0, made.stderr
    links = room_links(made.stdout.decode())
    member = ScriptClient(
        home,
        links["Creator link"],
        "ann",
        env={"ATOPOS_TOR": socks(tor_network, "pages-ann")},
        options=("--tor",),
        wait=TOR_TIMEOUT_MS / 1000,
    )
    try:
        member.wait_for(epoch_with(1))
        _join(page, links["Room link"], "tor browser")
        _state(page, "room")
        code = member.wait_for(epoch_with(2))["safety_code"]
        expect(page.locator("#safety-code")).to_have_text(str(code))
        _send(page, "hello from the browser")
        member.wait_for(lambda e: e.get("text") == "hello from the browser")
        member.say("hello from python")
        expect(page.locator("#messages")).to_contain_text("hello from python")
    finally:
        if member.process.poll() is None:
            member.finish()
    assert page.evaluate("location.origin") == onion_node.onion_url
    context.close()
    guard.check()
