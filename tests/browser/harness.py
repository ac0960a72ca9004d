"""What the browser tests share: a guard that watches every page of a context (console
errors, uncaught exceptions, requests leaving the server's origin), a guarded page for
running the JSON test vectors, screenshots kept under tests/artifacts/, and the steps a
person takes on the pages."""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Request, expect

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
# Chromium reports every HTTP error answer of fetch() on the console with this text; a
# test that expects one (a 404 for a burned secret) allows it by status.
_HTTP_ERROR = re.compile(r"^Failed to load resource: the server responded with a status of (\d+)")
# Argon2id without WebAssembly (the "safer" level) takes about a minute on a busy machine.
TIMEOUT_MS = 180_000


@dataclasses.dataclass
class Guard:
    """Collects what must not happen on any page of one browser context."""

    origin: str
    console_errors: list[str] = dataclasses.field(default_factory=list)
    page_errors: list[str] = dataclasses.field(default_factory=list)
    foreign_requests: list[str] = dataclasses.field(default_factory=list)
    requests: list[str] = dataclasses.field(default_factory=list)
    allowed_statuses: set[int] = dataclasses.field(default_factory=set)

    def watch(self, context: BrowserContext) -> BrowserContext:
        context.on("console", self._on_console)
        context.on("weberror", lambda error: self.page_errors.append(str(error.error)))
        context.on("request", self._on_request)
        return context

    def allow_http_error(self, status: int) -> None:
        """Accept Chromium's console line for an expected HTTP error answer."""
        self.allowed_statuses.add(status)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        match = _HTTP_ERROR.match(message.text)
        if match and int(match.group(1)) in self.allowed_statuses:
            return
        self.console_errors.append(message.text)

    def _on_request(self, request: Request) -> None:
        self.requests.append(f"{request.method} {request.url}")
        # A blob: URL of this origin is the page's own memory (a revealed file being saved).
        if not request.url.startswith((f"{self.origin}/", f"blob:{self.origin}/")):
            self.foreign_requests.append(request.url)

    def check(self) -> None:
        assert self.page_errors == [], f"uncaught errors in the page: {self.page_errors}"
        assert self.console_errors == [], f"console errors: {self.console_errors}"
        assert self.foreign_requests == [], (
            f"requests outside {self.origin}: {self.foreign_requests}"
        )


@contextlib.contextmanager
def open_vector_page(browser: Browser, origin: str, tools: str) -> Iterator[Page]:
    """A guarded page of the server at `origin` with the script `tools` run in it, where the
    test vectors run against the browser's modules as the pages load them."""
    context = browser.new_context()
    guard = Guard(origin)
    guard.watch(context)
    page = context.new_page()
    page.goto(f"{origin}/")
    page.evaluate(tools)
    yield page
    context.close()
    guard.check()


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as tests/artifacts/<name>.png (kept for review)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def state(page: Page, name: str) -> str:
    """The selector of a page state (a <section data-state>) while it is shown."""
    return f'[data-state="{name}"]:not([hidden])'


def wait_for_state(page: Page, name: str, timeout: float = TIMEOUT_MS) -> None:
    expect(page.locator(state(page, name))).to_be_visible(timeout=timeout)


@dataclasses.dataclass(frozen=True)
class CreatedLinks:
    share: str
    manage: str


def create_text_secret(
    page: Page,
    origin: str,
    text: str,
    *,
    views: int = 1,
    passphrase: str | None = None,
    shot: str | None = None,
) -> CreatedLinks:
    """Fill in the create page and return the links it shows."""
    page.goto(f"{origin}/")
    wait_for_state(page, "compose")
    page.get_by_label("Secret text").fill(text)
    page.get_by_label("Views allowed").fill(str(views))
    if passphrase is not None:
        page.get_by_label("Passphrase").fill(passphrase)
    if shot:
        screenshot(page, f"{shot}-filled")
    page.get_by_role("button", name="Encrypt and create link").click()
    wait_for_state(page, "done")
    if shot:
        screenshot(page, f"{shot}-done")
    return read_links(page)


def read_links(page: Page) -> CreatedLinks:
    return CreatedLinks(
        share=page.locator("#share-link").text_content() or "",
        manage=page.locator("#manage-link").text_content() or "",
    )


def reveal_text(page: Page, link: str, *, shot: str | None = None) -> str:
    """Open a share link, click Reveal and return the text shown."""
    page.goto(link)
    wait_for_state(page, "ready")
    if shot:
        screenshot(page, f"{shot}-ready")
    page.get_by_role("button", name="Reveal secret").click()
    wait_for_state(page, "text")
    if shot:
        screenshot(page, f"{shot}-text")
    return page.locator("#secret-output").text_content() or ""
