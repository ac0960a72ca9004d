"""The secret flows in Chromium against a real server: create in one browser context,
reveal in a fresh one; files, passphrases, manage links, link previews, proof of work."""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.browser.conftest import SECURITY_LEVELS, NewContext, security_level
from tests.browser.harness import (
    Guard,
    create_text_secret,
    reveal_text,
    screenshot,
    state,
    wait_for_state,
)
from tests.servers import ServerProcess, fixture_server


def secret_status(server: ServerProcess, manage_link: str) -> httpx.Response:
    """GET the status behind a manage link, as the CLI would (the token is the fragment)."""
    parts = urlsplit(manage_link)
    secret_id = parts.path.rsplit("/", 1)[-1]
    return httpx.get(
        f"{server.url}/api/v1/secrets/{secret_id}/status",
        headers={"authorization": f"Bearer {parts.fragment}"},
        timeout=10,
    )


def qr_modules(page: Page) -> set[tuple[int, int]]:
    """The dark modules of the QR code drawn on the page, without the quiet zone."""
    path = page.locator("#share-qr path").get_attribute("d") or ""
    return {(int(x) - 4, int(y) - 4) for x, y in re.findall(r"M(\d+) (\d+)h1v1h-1z", path)}


def encoder_modules(page: Page, text: str) -> set[tuple[int, int]]:
    """The dark modules the vendored encoder gives for `text` (level M, byte mode)."""
    cells: list[list[int]] = page.evaluate(
        """async ([text, encoder]) => {
            const { default: qrcode } = await import(encoder);
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
        [text, "/static/vendor/qrcode-generator-2.0.4/qrcode.mjs"],
    )
    return {(x, y) for x, y in cells}


def record_progress(page: Page, selector: str) -> None:
    """Start recording every value a <progress> element takes (read with `progress_values`)."""
    page.evaluate(
        """(selector) => {
            const element = document.querySelector(selector);
            window.__progress = [];
            new MutationObserver(() => window.__progress.push(element.value))
              .observe(element, { attributes: true, attributeFilter: ["value"] });
        }""",
        selector,
    )


def progress_values(page: Page) -> list[float]:
    values: list[float] = page.evaluate("window.__progress")
    return values


@pytest.mark.parametrize("browser", SECURITY_LEVELS, indirect=True)
def test_text_created_in_one_context_reveals_in_another_then_is_gone(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    creator, _ = new_context()
    secret = "Hello from Atopos: the door code is 4711.\nSecond line, ünïcødé ✓"
    create_page = creator.new_page()
    links = create_text_secret(create_page, web_server.url, secret, shot="create")
    # The QR code drawn is the share link's (checked once by decoding a screenshot with
    # zxing-cpp; here the drawing is compared with the vendored encoder's matrix).
    assert qr_modules(create_page) == encoder_modules(create_page, links.share)
    assert qr_modules(create_page) != encoder_modules(create_page, links.manage)
    assert re.fullmatch(
        rf"{re.escape(web_server.url)}/s/[A-Za-z0-9_-]{{22}}#[A-Za-z0-9_-]{{43}}", links.share
    )
    assert re.fullmatch(
        rf"{re.escape(web_server.url)}/m/[A-Za-z0-9_-]{{22}}#[A-Za-z0-9_-]{{43}}", links.manage
    )

    reader, _ = new_context()
    reader.grant_permissions(["clipboard-read", "clipboard-write"], origin=web_server.url)
    page = reader.new_page()
    assert reveal_text(page, links.share, shot="reveal") == secret
    page.get_by_role("button", name="Copy to clipboard").click()
    expect(page.locator("#copy-secret-status")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == secret

    later, guard = new_context()
    guard.allow_http_error(404)
    gone = later.new_page()
    gone.goto(links.share)
    gone.get_by_role("button", name="Reveal secret").click()
    wait_for_state(gone, "gone")
    screenshot(gone, "reveal-gone")

    # The server logged the page by its route template and nothing that names the secret.
    share = urlsplit(links.share)
    log = web_server.output()
    assert '"route":"/s/{id}"' in log
    for value in (share.path.rsplit("/", 1)[-1], share.fragment, urlsplit(links.manage).fragment):
        assert value not in log
    assert "door code" not in log


def test_the_reveal_button_works_from_the_moment_it_shows(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    """The ready state and its button show once the page's module has wired the button: with
    a slow script, a click on a button the static page showed early did nothing at all."""
    creator, _ = new_context()
    links = create_text_secret(creator.new_page(), web_server.url, "an early click")
    reader, _ = new_context()
    page = reader.new_page()

    def slow_script(route: Route) -> None:
        time.sleep(1.5)  # a slow network for this one script, not a wait for readiness
        route.continue_()

    page.route("**/static/js/reveal-page.js", slow_script)
    page.goto(links.share, wait_until="commit")
    page.get_by_role("button", name="Reveal secret").click(timeout=30_000)
    wait_for_state(page, "text", timeout=30_000)
    assert page.locator("#secret-output").text_content() == "an early click"


def test_fragment_is_removed_from_address_bar_and_history(
    guarded: tuple[Page, Guard], web_server: ServerProcess
) -> None:
    page, _ = guarded
    links = create_text_secret(page, web_server.url, "fragment test")
    page.goto(links.share)
    wait_for_state(page, "ready")
    assert "#" not in page.url
    assert page.evaluate("location.hash") == ""
    # The entry was replaced, not pushed: going back leaves the reveal page entirely.
    page.go_back()
    assert urlsplit(page.url).path == "/"
    page.go_forward()
    assert "#" not in page.url
    wait_for_state(page, "broken")


def test_get_of_the_share_link_consumes_nothing(
    guarded: tuple[Page, Guard], web_server: ServerProcess
) -> None:
    page, _ = guarded
    links = create_text_secret(page, web_server.url, "preview-proof")
    # What a link-preview bot or scanner does: GET (and HEAD) the link, fragment dropped.
    bot_headers = {"user-agent": "Slackbot-LinkExpanding 1.0", "accept": "text/html"}
    for method in ("GET", "HEAD"):
        response = httpx.request(method, links.share.split("#")[0], headers=bot_headers, timeout=10)
        assert response.status_code == 200
    status = secret_status(web_server, links.manage)
    assert status.status_code == 200
    assert status.json()["views_left"] == 1
    # Loading the page in a browser without clicking asks the API nothing at all.
    page, guard = guarded
    seen = len(guard.requests)
    page.goto(links.share)
    wait_for_state(page, "ready")
    assert not [request for request in guard.requests[seen:] if "/api/" in request]
    assert secret_status(web_server, links.manage).json()["views_left"] == 1
    assert reveal_text(page, links.share) == "preview-proof"


@pytest.mark.parametrize("browser", SECURITY_LEVELS, indirect=True)
def test_twenty_mib_file_round_trips_with_progress(
    new_context: NewContext, web_server: ServerProcess, tmp_path: Path
) -> None:
    content = os.urandom(20 * 1024 * 1024)
    source = tmp_path / "photos from the trip.bin"
    source.write_bytes(content)

    creator, _ = new_context()
    page = creator.new_page()
    page.goto(f"{web_server.url}/")
    page.get_by_text("File", exact=True).click()
    page.locator("#secret-file").set_input_files(str(source))
    expect(page.locator("#file-chosen")).to_contain_text("photos from the trip.bin")
    screenshot(page, "create-file-chosen")
    record_progress(page, "#working-progress")
    page.get_by_role("button", name="Encrypt and create link").click()
    wait_for_state(page, "done")
    sent = progress_values(page)
    assert len({value for value in sent if 0 < value < 1}) >= 3, sent
    share = page.locator("#share-link").text_content() or ""

    reader, _ = new_context()
    page = reader.new_page()
    page.goto(share)
    record_progress(page, "#opening-progress")
    page.get_by_role("button", name="Reveal secret").click()
    wait_for_state(page, "file")
    received = progress_values(page)
    assert len({value for value in received if 0 < value < 1}) >= 3, received
    expect(page.locator("#file-name")).to_have_text("photos from the trip.bin")
    screenshot(page, "reveal-file")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Save file").click()
    download = download_info.value
    assert download.suggested_filename == "photos from the trip.bin"
    saved = tmp_path / "saved.bin"
    download.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).digest() == hashlib.sha256(content).digest()


def test_a_dropped_file_is_shared(new_context: NewContext, web_server: ServerProcess) -> None:
    creator, _ = new_context()
    page = creator.new_page()
    page.goto(f"{web_server.url}/")
    wait_for_state(page, "compose")
    # What the browser hands the page when a file is dragged in from the desktop.
    transfer = page.evaluate_handle(
        """() => {
            const transfer = new DataTransfer();
            transfer.items.add(new File(["dropped ✓\\n"], "notes.txt", { type: "text/plain" }));
            return transfer;
        }"""
    )
    page.dispatch_event("#drop-zone", "dragover", {"dataTransfer": transfer})
    expect(page.locator("#drop-zone")).to_have_class(re.compile("is-dragging"))
    expect(page.locator("#file-panel")).to_be_visible()
    screenshot(page, "create-dragging")
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})
    expect(page.locator("#file-chosen")).to_contain_text("notes.txt")
    page.get_by_role("button", name="Encrypt and create link").click()
    wait_for_state(page, "done")
    share = page.locator("#share-link").text_content() or ""

    reader, _ = new_context()
    page = reader.new_page()
    page.goto(share)
    page.get_by_role("button", name="Reveal secret").click()
    wait_for_state(page, "file")
    expect(page.locator("#file-type")).to_have_text("text/plain")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Save file").click()
    download = download_info.value
    assert download.suggested_filename == "notes.txt"
    assert Path(download.path()).read_bytes() == "dropped ✓\n".encode()


# Counts the Argon2id runs of the page (each announces its engine once, at its start).
COUNT_ARGON2_RUNS = """async () => {
  const { passphraseProgress } = await import("/static/js/kdf.js");
  window.__argon2Runs = 0;
  passphraseProgress.addEventListener("passphrase-progress", ({ detail }) => {
    if (!(detail.fraction > 0)) window.__argon2Runs += 1;
  });
}"""


@pytest.mark.parametrize("browser", SECURITY_LEVELS, indirect=True)
def test_passphrase_secret_needs_the_passphrase(
    request: pytest.FixtureRequest, new_context: NewContext, web_server: ServerProcess
) -> None:
    """At the "safer" level one full-cost Argon2id, the reveal's, runs without WebAssembly
    (45-90 s each): the create page only shows that its slow step started and how far it is,
    and the secret is made and the wrong passphrase tried in the standard browser (what
    follows the key is the same code at both levels; envelope vectors pin the plain
    engine's bytes). The reveal page at that level then opens a secret sealed with
    WebAssembly's Argon2id."""
    is_safer = security_level(request) == "safer"
    # The steps that are not this level's point: the standard browser in both runs.
    standard: Browser | None = request.getfixturevalue("standard_browser") if is_safer else None
    if is_safer:
        # Without WebAssembly the page says why the step is slow, and how far it is.
        slow_creator, _ = new_context()
        slow_page = slow_creator.new_page()
        slow_page.goto(f"{web_server.url}/")
        slow_page.get_by_label("Secret text").fill("behind a passphrase")
        slow_page.get_by_label("Views allowed").fill("1")
        slow_page.get_by_label("Passphrase").fill("correct horse")
        slow_page.get_by_role("button", name="Encrypt and create link").click()
        detail = slow_page.locator("#working-detail")
        expect(detail).to_contain_text("without WebAssembly")
        expect(detail).to_contain_text(re.compile(r"\d+ % done, about \d+ s left"))
        slow_creator.close()  # ends the worker: the secret is made below, with WebAssembly
    creator, _ = new_context(using=standard)
    links = create_text_secret(
        creator.new_page(), web_server.url, "behind a passphrase", passphrase="correct horse"
    )
    trier, guard = new_context(using=standard)
    guard.allow_http_error(403)  # the wrong passphrase's ticket (access.md: nothing spent)
    page = trier.new_page()
    page.goto(links.share)
    page.get_by_role("button", name="Reveal secret").click()
    wait_for_state(page, "passphrase")
    screenshot(page, "reveal-passphrase")
    # The link alone shows nothing of the secret.
    assert "behind a passphrase" not in (page.text_content("main") or "")

    page.get_by_label("Passphrase").fill("wrong horse")
    page.get_by_role("button", name="Unlock").click()
    expect(page.locator("#passphrase-error")).to_contain_text("does not open")
    wait_for_state(page, "passphrase")
    screenshot(page, "reveal-passphrase-wrong")

    if is_safer:
        # The wrong passphrase spent nothing: the reader at this level starts afresh. Its
        # Argon2id without WebAssembly may outlast the challenge (120 s) on a busy machine:
        # the first ticket is then refused (403, nothing spent) and the page asks for a fresh
        # challenge (docs/protocol/access.md), which the browser logs as a failed load.
        reader, reader_guard = new_context()
        reader_guard.allow_http_error(403)
        page = reader.new_page()
        page.goto(links.share)
        page.get_by_role("button", name="Reveal secret").click()
        wait_for_state(page, "passphrase")
    page.evaluate(COUNT_ARGON2_RUNS)
    page.get_by_label("Passphrase").fill("correct horse")
    page.get_by_label("Passphrase").press("Enter")
    if is_safer:
        expect(page.locator("#opening-detail")).to_contain_text("% done")
    wait_for_state(page, "text")
    assert page.locator("#secret-output").text_content() == "behind a passphrase"
    # The access proof's Argon2id output opens the envelope too: the slow step ran once.
    assert page.evaluate("window.__argon2Runs") == 1


SHORT_CHALLENGE_TTL = 2


@pytest.fixture(scope="module")
def short_challenge_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"ATOPOS_CHALLENGE_TTL": str(SHORT_CHALLENGE_TTL)}
    yield from fixture_server(tmp_path_factory, "short-challenge-server", env=env)


def test_a_challenge_that_expires_while_the_passphrase_is_stretched_is_asked_again(
    browser: Browser, short_challenge_server: ServerProcess
) -> None:
    """A browser without WebAssembly can take longer to stretch the passphrase than the
    challenge lives (120 s by default): its first ticket is refused, nothing is spent, and the
    page asks for a fresh challenge and signs it with the key it already stretched. The slow
    step is played here by holding the first ticket request past a 2-second challenge life."""
    server = short_challenge_server
    context = browser.new_context()
    guard = Guard(server.url)
    guard.watch(context)
    guard.allow_http_error(403)  # the first ticket: its challenge expired, nothing spent
    try:
        page = context.new_page()
        links = create_text_secret(
            page, server.url, "outlived", passphrase="correct horse", views=1
        )
        seen: list[str] = []

        def hold_the_first_ticket(route: Route) -> None:
            seen.append("ticket")
            if seen.count("ticket") == 1:
                time.sleep(SHORT_CHALLENGE_TTL + 1.5)
            route.continue_()

        def count_challenge(route: Route) -> None:
            seen.append("challenge")
            route.continue_()

        page.goto(links.share)
        page.get_by_role("button", name="Reveal secret").click()
        wait_for_state(page, "passphrase")
        # From the walk with the passphrase on (the stamp before it was answered with a
        # challenge that asks for one).
        page.route("**/api/v1/secrets/*/ticket", hold_the_first_ticket)
        page.route("**/api/v1/secrets/*/challenge", count_challenge)
        page.evaluate(COUNT_ARGON2_RUNS)
        page.get_by_label("Passphrase").fill("correct horse")
        page.get_by_label("Passphrase").press("Enter")
        wait_for_state(page, "text")
        assert page.locator("#secret-output").text_content() == "outlived"
        # The walk with the passphrase: a refused ticket, then a fresh challenge and ticket.
        assert seen == ["challenge", "ticket", "challenge", "ticket"], seen
        # The second walk signed with the key stretched for the first.
        assert page.evaluate("window.__argon2Runs") == 1
    finally:
        context.close()


def test_manage_page_shows_status_and_deletes(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    creator, guard = new_context()
    guard.allow_http_error(404)
    page = creator.new_page()
    links = create_text_secret(page, web_server.url, "two views", views=2)

    manage = creator.new_page()
    manage.goto(links.manage)
    wait_for_state(manage, "status")
    assert "#" not in manage.url
    expect(manage.locator("#status-views")).to_have_text("2 views left")
    expect(manage.locator("#status-kind")).to_have_text("Text")
    screenshot(manage, "manage-status")

    reader, _ = new_context()
    assert reveal_text(reader.new_page(), links.share) == "two views"
    manage.get_by_role("button", name="Refresh").click()
    expect(manage.locator("#status-views")).to_have_text("1 view left")

    manage.get_by_role("button", name="Delete now").click()
    expect(manage.locator("#confirm-delete")).to_be_visible()
    screenshot(manage, "manage-confirm-delete")
    manage.get_by_role("button", name="Yes, delete it").click()
    wait_for_state(manage, "deleted")
    screenshot(manage, "manage-deleted")

    after = creator.new_page()
    after.goto(links.share)
    after.get_by_role("button", name="Reveal secret").click()
    wait_for_state(after, "gone")
    again = creator.new_page()
    again.goto(links.manage)
    wait_for_state(again, "gone")
    screenshot(again, "manage-gone")


@pytest.mark.parametrize(
    ("link_tail", "description"),
    [("", "no fragment"), ("#not-a-key", "damaged key"), ("!bad-id#x", "damaged id")],
)
def test_incomplete_share_links_say_so_and_fetch_nothing(
    guarded: tuple[Page, Guard], web_server: ServerProcess, link_tail: str, description: str
) -> None:
    page, guard = guarded
    page.goto(f"{web_server.url}/s/AAAAAAAAAAAAAAAAAAAAAA{link_tail}")
    wait_for_state(page, "broken")
    assert not any("/api/" in request for request in guard.requests), description
    if not link_tail:
        screenshot(page, "reveal-broken-link")


@pytest.fixture(scope="module")
def pow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from fixture_server(tmp_path_factory, "pow-server", pow_bits=14)


def test_proof_of_work_runs_in_workers_with_visible_progress(
    browser: Browser, pow_server: ServerProcess
) -> None:
    context = browser.new_context()
    guard = Guard(pow_server.url)
    guard.watch(context)
    try:
        page = context.new_page()
        links = create_text_secret(page, pow_server.url, "worth the work")
        page.goto(links.share)
        page.evaluate(
            """() => {
                window.__tries = [];
                const detail = document.getElementById("opening-detail");
                new MutationObserver(() => window.__tries.push(detail.textContent))
                  .observe(detail, { childList: true, characterData: true, subtree: true });
            }"""
        )
        record_progress(page, "#opening-progress")
        page.get_by_role("button", name="Reveal secret").click()
        wait_for_state(page, "text")
        assert page.locator("#secret-output").text_content() == "worth the work"
        tries = page.evaluate("window.__tries")
        assert any(re.search(r"[\d,.]+ tries so far", text) for text in tries), tries
        assert any(0 < value < 1 for value in progress_values(page))
        assert any(request.endswith("/static/js/pow-worker.js") for request in guard.requests)
    finally:
        context.close()
    guard.check()


def test_proof_of_work_screen(new_context: NewContext, web_server: ServerProcess) -> None:
    """A screenshot of the puzzle step: the challenge is answered with a hard one so the
    workers are still busy when the picture is taken (the test never asks for a ticket)."""
    # The challenge walk: the hard puzzle is its routed challenge (a stamp would reveal).
    context, _ = new_context(stamp=False)
    page = context.new_page()
    links = create_text_secret(page, web_server.url, "slow")
    page.route(
        "**/api/v1/secrets/*/challenge",
        lambda route: route.fulfill(
            status=200,
            content_type="application/json",
            body='{"challenge":"screenshot","bits":24,"expires_at":0}',
        ),
    )
    page.goto(links.share)
    page.get_by_role("button", name="Reveal secret").click()
    expect(page.locator("#opening-detail")).to_contain_text("tries so far")
    expect(page.locator('[data-step="work"]')).to_have_attribute("data-status", "active")
    screenshot(page, "reveal-proof-of-work")
    assert page.locator(state(page, "opening")).is_visible()


def test_secret_pages_explain_themselves_without_javascript(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    """Tor Browser's "Safest" level turns JavaScript off: the pages say why they cannot work,
    which level does, and the CLI way; opening a share link spends nothing."""
    context, guard = new_context(java_script_enabled=False)
    page = context.new_page()
    # (Playwright's text matching skips <noscript>: its paragraph is found by CSS.)
    notice = page.locator("noscript > p")
    page.goto(f"{web_server.url}/")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("This page needs JavaScript")
    expect(notice).to_contain_text("“Safest” security level turns JavaScript off")
    expect(notice).to_contain_text("atopos secret create --tor")
    page.goto(f"{web_server.url}/s/{'A' * 22}#{'B' * 43}")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("Nothing has been used up")
    expect(notice).to_contain_text("atopos secret reveal --tor LINK")
    screenshot(page, "reveal-no-javascript")
    assert not [request for request in guard.requests if "/api/" in request]
