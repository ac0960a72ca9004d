"""Device binding in the browser (docs/protocol/device.md): the "This device" page makes
non-extractable WebCrypto keys kept in IndexedDB and shows their code; a secret bound to that
code (from the create page or the CLI) opens in that browser only. A second, fresh browser
context is turned away without a ticket request, a browser with another device gets 403, and
either way the view is still there. A Python device's code pasted into the create page gives
a secret that the CLI on that device reveals."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, Route, expect

from atopos.crypto.base64url import b64url_decode
from atopos.crypto.device import parse_device_code, verify_device_proof
from tests.browser.conftest import PHONE, NewContext
from tests.browser.harness import (
    CreatedLinks,
    Guard,
    read_links,
    screenshot,
    wait_for_state,
)
from tests.servers import ATOPOS, ServerProcess

CODE = re.compile(r"^atd1-[A-Za-z0-9_-]{91}$")
BOUND_ELSEWHERE = "This secret is bound to another device"
REFUSED = (
    "This secret is bound to a different device; it was not opened and is still there "
    "for the right device."
)

# The stored device record, read back from IndexedDB as the page stored it.
_STORED_KEYS = """async () => {
  const db = await new Promise((resolve, reject) => {
    const req = indexedDB.open("atopos");
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  const record = await new Promise((resolve, reject) => {
    const req = db.transaction("device").objectStore("device").get("this-device");
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  db.close();
  if (record === undefined) return null;
  const describe = (key) => ({ type: key.type, extractable: key.extractable,
                               algorithm: key.algorithm.name, usages: key.usages });
  let exported = "refused";
  try { await crypto.subtle.exportKey("pkcs8", record.sealing.privateKey); exported = "exported"; }
  catch (error) { exported = error.name; }
  return {
    signing: [describe(record.signing.privateKey), describe(record.signing.publicKey)],
    sealing: [describe(record.sealing.privateKey), describe(record.sealing.publicKey)],
    exportPrivate: exported,
  };
}"""


def cli(
    *args: str, stdin: bytes = b"", env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(
        [ATOPOS, *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if check:
        assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result


def open_device_page(context: BrowserContext, origin: str, *, shot: str | None = None) -> str:
    """Open /device in this context (making its device on first use); return the code."""
    page = context.new_page()
    page.goto(f"{origin}/device")
    wait_for_state(page, "ready")
    code = page.locator("#device-code").text_content() or ""
    if shot:
        screenshot(page, shot)
    page.close()
    return code


def create_bound_secret(
    page: Page, origin: str, text: str, code: str, *, shot: str | None = None
) -> CreatedLinks:
    page.goto(f"{origin}/")
    wait_for_state(page, "compose")
    page.get_by_label("Secret text").fill(text)
    page.get_by_label("Bind to a device").fill(code)
    if shot:
        screenshot(page, f"{shot}-filled")
    page.get_by_role("button", name="Encrypt and create link").click()
    wait_for_state(page, "done")
    if shot:
        screenshot(page, f"{shot}-done")
    return read_links(page)


def status(origin: str, manage_link: str) -> dict[str, object]:
    parts = urlsplit(manage_link)
    secret_id = parts.path.rsplit("/", 1)[1]
    response = httpx.get(
        f"{origin}/api/v1/secrets/{secret_id}/status",
        headers={"authorization": f"Bearer {parts.fragment}"},
        timeout=10,
    )
    response.raise_for_status()
    result: dict[str, object] = response.json()
    return result


def ticket_requests(guard: Guard) -> list[str]:
    return [request for request in guard.requests if request.endswith("/ticket")]


def record_tickets(page: Page) -> list[dict[str, object]]:
    """Record the JSON body of every ticket request this page sends."""
    bodies: list[dict[str, object]] = []
    page.on(
        "request",
        lambda request: (
            bodies.append(json.loads(request.post_data or "{}"))
            if request.url.endswith("/ticket")
            else None
        ),
    )
    return bodies


def test_device_page_makes_keeps_and_forgets_a_device(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    context, guard = new_context()
    page = context.new_page()
    page.goto(f"{web_server.url}/device")
    wait_for_state(page, "ready")
    code = page.locator("#device-code").text_content() or ""
    assert CODE.match(code), code
    parse_device_code(code)  # the Python parser accepts it: keys, checksum and all
    expect(page.locator("#device-status")).to_contain_text("is now a device")
    expect(page.locator("main")).to_contain_text("Clearing this site's data destroys the device")
    # The QR code holds exactly the device code (level M, byte mode).
    path = page.locator("#device-qr path").get_attribute("d") or ""
    drawn = {(int(x) - 4, int(y) - 4) for x, y in re.findall(r"M(\d+) (\d+)h1v1h-1z", path)}
    assert drawn == encoder_modules(page, code)
    screenshot(page, "device-page")

    # Non-extractable CryptoKeys in IndexedDB: even this origin cannot export the private keys.
    stored = page.evaluate(_STORED_KEYS)
    assert stored["signing"][0] == {
        "type": "private",
        "extractable": False,
        "algorithm": "Ed25519",
        "usages": ["sign"],
    }
    assert stored["sealing"][0] == {
        "type": "private",
        "extractable": False,
        "algorithm": "X25519",
        "usages": ["deriveBits"],
    }
    assert stored["exportPrivate"] == "InvalidAccessError"

    # The same device after a reload and in another tab.
    page.reload()
    wait_for_state(page, "ready")
    expect(page.locator("#device-code")).to_have_text(code)
    expect(page.locator("#device-status")).not_to_contain_text("is now a device")
    assert open_device_page(context, web_server.url) == code

    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=web_server.url)
    page.get_by_role("button", name="Copy device code").click()
    expect(page.locator("#copy-code-status")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == code

    # Forgetting asks first; "Keep it" keeps it.
    page.get_by_role("button", name="Forget this device").click()
    screenshot(page, "device-forget-confirm")
    page.get_by_role("button", name="Keep it").click()
    assert page.evaluate(_STORED_KEYS) is not None
    page.get_by_role("button", name="Forget this device").click()
    page.get_by_role("button", name="Yes, forget it").click()
    wait_for_state(page, "forgotten")
    screenshot(page, "device-forgotten")
    assert page.evaluate(_STORED_KEYS) is None
    page.get_by_role("button", name="Make a new device").click()
    wait_for_state(page, "ready")
    new_code = page.locator("#device-code").text_content() or ""
    assert CODE.match(new_code)
    assert new_code != code
    assert [r for r in guard.requests if "/api/" in r] == []  # the device page calls no API


def test_a_browser_device_reveals_a_secret_bound_to_it_and_no_other_context_can(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    # The challenge walk: it counts each reader's ticket requests (a stamp is one more).
    device_context, device_guard = new_context(stamp=False)
    code = open_device_page(device_context, web_server.url)

    creator, _ = new_context()
    secret = "only for the device on the desk ✓"
    links = create_bound_secret(
        creator.new_page(), web_server.url, secret, code, shot="device-create"
    )
    assert status(web_server.url, links.manage)["is_bound"] is True

    # A second, fresh context holds the whole link but no device: no ticket is asked for.
    stranger, stranger_guard = new_context(stamp=False)
    page = stranger.new_page()
    page.goto(links.share)
    page.get_by_role("button", name="Reveal secret").click()
    wait_for_state(page, "bound")
    expect(page.locator("#bound-title")).to_have_text(BOUND_ELSEWHERE)
    screenshot(page, "reveal-bound-no-device")
    assert ticket_requests(stranger_guard) == []
    assert status(web_server.url, links.manage)["views_left"] == 1

    # A context with a device of its own is refused at the ticket step (403), spending nothing.
    other, other_guard = new_context(stamp=False)
    other_guard.allow_http_error(403)
    other_code = open_device_page(other, web_server.url)
    assert other_code != code
    page = other.new_page()
    page.goto(links.share)
    page.get_by_role("button", name="Reveal secret").click()
    wait_for_state(page, "bound")
    expect(page.locator("#bound-message")).to_have_text(REFUSED)
    screenshot(page, "reveal-bound-refused")
    assert len(ticket_requests(other_guard)) == 1
    assert status(web_server.url, links.manage)["views_left"] == 1

    # The device itself opens it, proving with the very keys its page showed the code of.
    page = device_context.new_page()
    tickets = record_tickets(page)
    page.goto(links.share)
    wait_for_state(page, "ready")
    screenshot(page, "reveal-bound-ready")
    page.get_by_role("button", name="Reveal secret").click()
    wait_for_state(page, "text")
    screenshot(page, "reveal-bound-text")
    assert page.locator("#secret-output").text_content() == secret
    assert len(tickets) == 1
    secret_id = urlsplit(links.share).path.rsplit("/", 1)[1]
    assert verify_device_proof(
        parse_device_code(code).signing_key,
        b64url_decode(secret_id),
        str(tickets[0]["challenge"]),
        str(tickets[0]["device_proof"]),
    )
    assert len(ticket_requests(device_guard)) == 1
    with pytest.raises(httpx.HTTPStatusError):
        status(web_server.url, links.manage)  # its one view is spent: gone


def test_a_bound_secret_answers_the_stamp_with_a_challenge_and_only_its_device_goes_on(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    """The stamp path, the page's default: a stamp carries no device proof, so the server
    answers a bound secret's stamp with a challenge that says `is_bound`. A browser without
    a device stops there, having spent nothing; the device signs that challenge and reveals."""
    device_context, _ = new_context()
    code = open_device_page(device_context, web_server.url)
    creator, _ = new_context()
    secret = "bound, and stamped first"
    links = create_bound_secret(creator.new_page(), web_server.url, secret, code)
    secret_id = urlsplit(links.share).path.rsplit("/", 1)[1]

    stranger, _ = new_context()
    page = stranger.new_page()
    tickets = record_tickets(page)
    page.goto(links.share)
    page.get_by_role("button", name="Reveal secret").click()
    wait_for_state(page, "bound")
    expect(page.locator("#bound-title")).to_have_text(BOUND_ELSEWHERE)
    # One request, the stamp (no device proof in it), and no ticket step after it.
    assert [sorted(body) for body in tickets] == [["access_proof", "nonce", "reveal", "stamp"]]
    assert status(web_server.url, links.manage)["views_left"] == 1

    page = device_context.new_page()
    tickets = record_tickets(page)
    page.goto(links.share)
    page.get_by_role("button", name="Reveal secret").click()
    wait_for_state(page, "text")
    assert page.locator("#secret-output").text_content() == secret
    # The stamp, then the ticket step with a device proof over the challenge it was answered
    # with, which revealed.
    assert [("stamp" in body, "device_proof" in body) for body in tickets] == [
        (True, False),
        (False, True),
    ]
    assert verify_device_proof(
        parse_device_code(code).signing_key,
        b64url_decode(secret_id),
        str(tickets[1]["challenge"]),
        str(tickets[1]["device_proof"]),
    )
    with pytest.raises(httpx.HTTPStatusError):
        status(web_server.url, links.manage)  # its one view is spent: gone


def test_a_proof_that_is_dropped_on_the_way_is_refused_and_spends_nothing(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    """The server, not the page, enforces the binding: strip the proof from the device's own
    ticket request and the view is not spent."""
    context, guard = new_context()
    guard.allow_http_error(403)
    code = open_device_page(context, web_server.url)
    creator, _ = new_context()
    links = create_bound_secret(creator.new_page(), web_server.url, "proof needed", code)

    def strip_proof(route: Route) -> None:
        body = json.loads(route.request.post_data or "{}")
        body.pop("device_proof", None)
        route.continue_(post_data=json.dumps(body))

    page = context.new_page()
    page.route("**/ticket", strip_proof)
    page.goto(links.share)
    page.get_by_role("button", name="Reveal secret").click()
    wait_for_state(page, "bound")
    expect(page.locator("#bound-message")).to_have_text(REFUSED)
    assert status(web_server.url, links.manage)["views_left"] == 1

    page = context.new_page()  # (a goto of the same link would be a fragment navigation)
    page.goto(links.share)
    page.get_by_role("button", name="Reveal secret").click()
    wait_for_state(page, "text")
    assert page.locator("#secret-output").text_content() == "proof needed"


def test_a_secret_bound_by_the_cli_opens_in_the_browser_device(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    context, _ = new_context()
    code = open_device_page(context, web_server.url)
    secret = "bound from the command line"
    link = (
        cli(
            "--server",
            web_server.url,
            "secret",
            "create",
            "--bind-device",
            code,
            stdin=secret.encode(),
        )
        .stdout.decode()
        .strip()
    )
    # The challenge walk: it asks that no ticket request is sent (a stamp would be one).
    stranger, stranger_guard = new_context(stamp=False)
    page = stranger.new_page()
    page.goto(link)
    page.get_by_role("button", name="Reveal secret").click()
    wait_for_state(page, "bound")
    assert ticket_requests(stranger_guard) == []

    page = context.new_page()
    page.goto(link)
    page.get_by_role("button", name="Reveal secret").click()
    wait_for_state(page, "text")
    assert page.locator("#secret-output").text_content() == secret


def test_a_python_device_code_pasted_in_the_browser_binds_for_the_cli(
    new_context: NewContext, web_server: ServerProcess, tmp_path: Path
) -> None:
    home = {"ATOPOS_HOME": str(tmp_path / "device"), "ATOPOS_KEYRING": "off"}
    cli("device", "init", env=home)
    code = cli("device", "show", "--no-qr", env=home).stdout.decode().strip()
    assert CODE.match(code)

    context, _ = new_context()
    secret = "sealed in Chromium for a Python device"
    links = create_bound_secret(context.new_page(), web_server.url, secret, code)

    # Another machine (no device) is refused without spending the view; the device reads it.
    elsewhere = {"ATOPOS_HOME": str(tmp_path / "elsewhere"), "ATOPOS_KEYRING": "off"}
    refused = cli("secret", "reveal", links.share, env=elsewhere, check=False)
    assert refused.returncode == 4, refused.stderr
    assert status(web_server.url, links.manage)["views_left"] == 1
    assert cli("secret", "reveal", links.share, env=home).stdout.decode() == secret


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda code: code[5:], "A device code starts with 'atd1-'; copy the whole code."),
        (
            lambda code: code[:-1],
            "A device code has 96 characters and this one has 95; copy the whole code.",
        ),
        (
            lambda code: code[:40] + ("A" if code[40] != "A" else "B") + code[41:],
            "The device code has a typo (its checksum does not match).",
        ),
    ],
    ids=["prefix", "length", "checksum"],
)
def test_a_mistyped_device_code_is_refused_in_place_and_nothing_is_sent(
    new_context: NewContext, web_server: ServerProcess, mangle: object, message: str
) -> None:
    context, guard = new_context()
    code = open_device_page(context, web_server.url)
    page = context.new_page()
    page.goto(f"{web_server.url}/")
    page.get_by_label("Secret text").fill("not sent")
    assert callable(mangle)
    page.get_by_label("Bind to a device").fill(mangle(code))
    page.get_by_role("button", name="Encrypt and create link").click()
    expect(page.locator("#device-code-error")).to_have_text(message)
    expect(page.get_by_label("Bind to a device")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Bind to a device")).to_be_focused()
    wait_for_state(page, "compose")
    if message.startswith("The device code has a typo"):
        screenshot(page, "create-device-code-typo")
    assert [r for r in guard.requests if r.startswith("POST")] == []
    # Fixing it clears the error and binds.
    page.get_by_label("Bind to a device").fill(f"  {code}\n")
    page.get_by_role("button", name="Encrypt and create link").click()
    wait_for_state(page, "done")
    expect(page.locator("#done-summary")).to_contain_text("Only the device you bound it to")


def test_the_device_page_serves_with_the_csp(web_server: ServerProcess) -> None:
    response = httpx.get(f"{web_server.url}/device", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-robots-tag"] == "noindex, nofollow"
    # One external module script, no inline script or event handler.
    assert re.findall(r"<script[^>]*>", response.text) == [
        '<script type="module" src="static/js/device-page.js">'
    ]
    assert re.search(r"\son[a-z]+=", response.text) is None


def test_the_device_page_fits_a_phone_and_labels_its_controls(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    context, _ = new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(f"{web_server.url}/device")
    wait_for_state(page, "ready")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "phone-device")
    unlabelled = page.evaluate(
        """() => Array.from(document.querySelectorAll("input, button"))
            .filter((el) => el.closest("[hidden]") === null)
            .filter((el) => el.tagName === "BUTTON" ? el.textContent.trim() === ""
                                                    : el.labels.length === 0)
            .map((el) => el.id)"""
    )
    assert unlabelled == []


def encoder_modules(page: Page, text: str) -> set[tuple[int, int]]:
    """The dark modules the vendored encoder gives for `text` (level M, byte mode)."""
    cells: list[list[int]] = page.evaluate(
        """async (text) => {
            const { default: qrcode } = await import(
              "/static/vendor/qrcode-generator-2.0.4/qrcode.mjs");
            const code = qrcode(0, "M");
            code.addData(text, "Byte");
            code.make();
            const dark = [];
            for (let row = 0; row < code.getModuleCount(); row++) {
              for (let col = 0; col < code.getModuleCount(); col++) {
                if (code.isDark(row, col)) dark.push([col, row]);
              }
            }
            return dark;
        }""",
        text,
    )
    return {(x, y) for x, y in cells}
