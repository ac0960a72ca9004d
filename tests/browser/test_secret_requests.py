"""Secret requests in the browser (docs/protocol/requests.md): a request link opened in a
fresh browser context (no account, no device, no install) is filled with text or a file,
which then opens only on the requester's device: a CLI device, or the browser device that
made the request on /ask/new and was told it arrived. Another context, or another device,
holding every link opens nothing and spends nothing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import expect

from atopos.client.request_links import parse_pickup_link
from atopos.server.middleware import CONTENT_SECURITY_POLICY
from tests.browser.conftest import NewContext
from tests.browser.harness import screenshot, wait_for_state
from tests.servers import ATOPOS, ServerProcess

BOUND_ELSEWHERE = "This secret is bound to another device"


def cli(home: Path, server: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "ATOPOS_HOME": str(home), "ATOPOS_KEYRING": "off", "ATOPOS_SERVER": server}
    return subprocess.run([ATOPOS, *args], capture_output=True, env=env, timeout=120, check=False)


def request_status(server: str, pickup_link: str) -> dict[str, object]:
    pickup = parse_pickup_link(pickup_link)
    response = httpx.get(
        f"{server}/api/v1/requests/{pickup.request_id}",
        headers={"authorization": f"Bearer {pickup.request_token}"},
        timeout=10,
    )
    response.raise_for_status()
    result: dict[str, object] = response.json()
    return result


def test_a_request_filled_in_a_browser_opens_only_on_the_cli_device(
    tmp_path: Path, new_context: NewContext, web_server: ServerProcess
) -> None:
    requester, other = tmp_path / "requester", tmp_path / "other"
    for home in (requester, other):
        assert cli(home, web_server.url, "device", "init").returncode == 0
    made = cli(requester, web_server.url, "secret", "request", "--json")
    assert made.returncode == 0, made.stderr.decode()
    links = json.loads(made.stdout)

    # The filler: a fresh context, no device, no account.
    filler, filler_guard = new_context()
    page = filler.new_page()
    page.goto(links["request_link"])
    wait_for_state(page, "compose")
    assert urlsplit(page.url).fragment == ""  # the key left the address bar
    secret = "the door code is 4711 ✓"
    page.get_by_label("Secret text").fill(secret)
    screenshot(page, "request-fill-compose")
    page.get_by_role("button", name="Encrypt and send").click()
    wait_for_state(page, "done")
    screenshot(page, "request-fill-done")
    assert request_status(web_server.url, links["pickup_link"])["state"] == "filled"

    # Filled once: the same link again is closed.
    filler_guard.allow_http_error(404)
    page = filler.new_page()
    page.goto(links["request_link"])
    wait_for_state(page, "compose")
    page.get_by_label("Secret text").fill("a second secret")
    page.get_by_role("button", name="Encrypt and send").click()
    wait_for_state(page, "gone")

    # Another CLI device holding the pickup link is refused, spending nothing.
    refused = cli(other, web_server.url, "secret", "reveal", links["pickup_link"])
    assert refused.returncode == 4, refused.stderr.decode()
    assert refused.stdout == b""
    # The requester's device opens it.
    opened = cli(requester, web_server.url, "secret", "reveal", links["pickup_link"])
    assert opened.returncode == 0, opened.stderr.decode()
    assert opened.stdout.decode() == secret


def test_a_file_dropped_on_the_request_page_reaches_the_cli_device(
    tmp_path: Path, new_context: NewContext, web_server: ServerProcess
) -> None:
    requester = tmp_path / "requester"
    assert cli(requester, web_server.url, "device", "init").returncode == 0
    links = json.loads(cli(requester, web_server.url, "secret", "request", "--json").stdout)
    source = tmp_path / "contract.pdf"
    source.write_bytes(os.urandom(3000))
    filler, _ = new_context()
    page = filler.new_page()
    page.goto(links["request_link"])
    wait_for_state(page, "compose")
    page.locator("#secret-file").set_input_files(str(source))
    expect(page.locator("#file-chosen")).to_contain_text("contract.pdf")
    page.get_by_role("button", name="Encrypt and send").click()
    wait_for_state(page, "done")
    out = tmp_path / "out"
    out.mkdir()
    saved = cli(requester, web_server.url, "secret", "reveal", links["pickup_link"], "-o", str(out))
    assert saved.returncode == 0, saved.stderr.decode()
    assert (out / "contract.pdf").read_bytes() == source.read_bytes()


def test_a_browser_requester_is_told_and_alone_opens_it(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    requester, _ = new_context()
    asking = requester.new_page()
    asking.goto(f"{web_server.url}/ask/new")
    wait_for_state(asking, "ask")
    screenshot(asking, "request-ask")
    asking.get_by_role("button", name="Make a request link").click()
    wait_for_state(asking, "waiting")
    screenshot(asking, "request-waiting")
    request_link = asking.locator("#request-link").text_content() or ""
    assert "/q/" in request_link
    assert "/ask/" in urlsplit(asking.url).path  # the pickup address, for a reload

    filler, _ = new_context()
    page = filler.new_page()
    page.goto(request_link)
    wait_for_state(page, "compose")
    secret = "recovery code 9F2K-77QA"
    page.get_by_label("Secret text").fill(secret)
    page.get_by_role("button", name="Encrypt and send").click()
    wait_for_state(page, "done")

    # The requester's page notices by itself.
    wait_for_state(asking, "arrived")
    screenshot(asking, "request-arrived")
    share_link = asking.locator("#open-secret").get_attribute("href") or ""
    assert "/s/" in share_link

    # The filler's context, holding the share link too, has no device: nothing is asked for.
    stranger = filler.new_page()
    stranger.goto(share_link)
    stranger.get_by_role("button", name="Reveal secret").click()
    wait_for_state(stranger, "bound")
    expect(stranger.locator("#bound-title")).to_have_text(BOUND_ELSEWHERE)
    # A fresh context opening the pickup address has no device either.
    elsewhere, _ = new_context()
    pickup_page = elsewhere.new_page()
    pickup_page.goto(asking.url)
    wait_for_state(pickup_page, "other-device")

    # The requester opens it.
    asking.get_by_role("link", name="Open the secret").click()
    wait_for_state(asking, "ready")
    asking.get_by_role("button", name="Reveal secret").click()
    wait_for_state(asking, "text")
    assert asking.locator("#secret-output").text_content() == secret


def test_the_request_pages_carry_the_csp_and_explain_themselves_without_javascript(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    request_id = "AAECAwQFBgcICQoLDA0ODw"
    context, guard = new_context(java_script_enabled=False)
    for path, heading in (
        (f"/q/{request_id}#x.y", "Sending a requested secret needs JavaScript"),
        ("/ask/new", "Asking for a secret needs JavaScript"),
        (f"/ask/{request_id}#x.y", "Asking for a secret needs JavaScript"),
    ):
        response = httpx.get(f"{web_server.url}{path.partition('#')[0]}", timeout=10)
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        page = context.new_page()
        page.goto(f"{web_server.url}{path}")
        expect(page.get_by_role("heading", name=heading)).to_be_visible()
        assert page.locator("[data-state]:not([hidden])").count() == 0
    screenshot(page, "request-no-javascript")
    assert [r for r in guard.requests if "/api/" in r] == []


def test_the_fill_page_drops_the_key_from_the_address_bar_even_when_it_cannot_encrypt(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    """A browser that cannot seal to a device is told so, and the request key is not left
    in its address bar and history."""
    key = "A" * 43
    context, _ = new_context()
    context.add_init_script("Object.defineProperty(globalThis, 'indexedDB', {value: undefined})")
    page = context.new_page()
    page.goto(f"{web_server.url}/q/{'A' * 22}#{key}.atd1-{'B' * 91}")
    wait_for_state(page, "unsupported")
    assert urlsplit(page.url).fragment == ""
    assert key not in page.evaluate("location.href")


def test_a_pickup_address_with_a_wrong_token_stops_asking(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    """A damaged request token is refused (403) for good: the page says the address is
    damaged instead of asking again forever."""
    requester, guard = new_context()
    asking = requester.new_page()
    asking.goto(f"{web_server.url}/ask/new")
    wait_for_state(asking, "ask")
    asking.get_by_role("button", name="Make a request link").click()
    wait_for_state(asking, "waiting")
    path, fragment = urlsplit(asking.url).path, urlsplit(asking.url).fragment
    key = fragment.split(".")[0]
    guard.allow_http_error(403)
    page = requester.new_page()
    page.goto(f"{web_server.url}{path}#{key}.{'A' * 43}")
    wait_for_state(page, "broken")


def test_a_browser_requester_cancels_and_the_link_is_closed(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    """The waiting page's Cancel button closes the request (DELETE, requests.md 4.4): the
    page says so and stops asking, and the request link then fills nothing."""
    requester, requester_guard = new_context()
    requester_guard.allow_http_error(404)  # a poll already under way may meet the cancel
    asking = requester.new_page()
    asking.goto(f"{web_server.url}/ask/new")
    wait_for_state(asking, "ask")
    asking.get_by_role("button", name="Make a request link").click()
    wait_for_state(asking, "waiting")
    request_link = asking.locator("#request-link").text_content() or ""
    pickup_address = asking.url
    asking.get_by_role("button", name="Cancel request").click()
    wait_for_state(asking, "cancelled")
    screenshot(asking, "request-cancelled")
    request_id = urlsplit(pickup_address).path.rsplit("/", 1)[1]
    token = urlsplit(pickup_address).fragment.split(".")[1]
    gone = httpx.get(
        f"{web_server.url}/api/v1/requests/{request_id}",
        headers={"authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert gone.status_code == 404

    filler, filler_guard = new_context()
    filler_guard.allow_http_error(404)
    page = filler.new_page()
    page.goto(request_link)
    wait_for_state(page, "compose")
    page.get_by_label("Secret text").fill("too late")
    page.get_by_role("button", name="Encrypt and send").click()
    wait_for_state(page, "gone")
    # Reopening the pickup address says the request is closed.
    again = requester.new_page()
    again.goto(pickup_address)
    wait_for_state(again, "gone")
