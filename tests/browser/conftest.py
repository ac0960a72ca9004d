"""Fixtures of the browser suite: Debian's Chromium driven by pytest-playwright (one browser
for the session, a fresh context per test) against a real `atopos serve` on loopback.

Every context made through `new_context` is guarded: at the end of the test it must have
logged no console error and no uncaught exception, and requested nothing outside the
server's origin.

Tor Browser's security levels: `browser` is Chromium as it ships ("standard") unless a test
asks for `@pytest.mark.parametrize("browser", SECURITY_LEVELS, indirect=True)`, which runs
it once more in a Chromium with `--js-flags=--jitless` ("safer": no JIT and no WebAssembly,
what Tor Browser's "Safer" level turns off). Every test at that level first checks that
WebAssembly is really absent (`at_the_safer_level`). (`--noexpose_wasm`, the older V8 switch,
is gone from Chromium 156, and an unknown V8 flag voids the whole `--js-flags`.)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, BrowserType, Page, expect

from tests.browser.harness import TIMEOUT_MS, Guard
from tests.servers import ServerProcess, fixture_server

CHROMIUM = os.environ.get("ATOPOS_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking switches Chromium tries to reach Google's services at
# start, which this machine's closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SAFER_ARGS = ["--js-flags=--jitless"]
EXPECT_TIMEOUT_MS = 5_000  # Playwright's default for expect()
SECURITY_LEVELS = ["standard", "safer"]
DESKTOP = {"width": 1100, "height": 900}
PHONE = {"width": 390, "height": 844}

NewContext = Callable[..., tuple[BrowserContext, Guard]]
# The reveal page starts with a stamp (one request, docs/protocol/access.md "Stamp: a reveal
# in one request") unless this browser turned stamps off. Contexts follow the product's
# default (stamps on), so the suite runs what readers run; a test that pins the challenge
# walk on purpose (counts or routes its requests, reads its progress) asks
# `new_context(stamp=False)`, which sets this on reveal pages (/s/...) only, so that no other
# page finds the key in its storage; about:blank has no storage at all.
STAMP_OFF = """
if (location.pathname.startsWith("/s/")) {
  try { localStorage.setItem("atoposStamp", "off"); } catch {}
}
"""


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/system-deps.sh (make test does).")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def safer_browser(
    browser_type: BrowserType, browser_type_launch_args: dict[str, Any]
) -> Iterator[Browser]:
    """Chromium at Tor Browser's "Safer" level: no JIT, no WebAssembly."""
    args = [*browser_type_launch_args["args"], *SAFER_ARGS]
    browser = browser_type.launch(**{**browser_type_launch_args, "args": args})
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="session")
def standard_browser(
    browser_type: BrowserType, browser_type_launch_args: dict[str, Any]
) -> Iterator[Browser]:
    """Chromium as it ships, also inside a test at the "safer" level (whose `browser` is the
    safer one): its steps that are not the point at that level skip the slow Argon2id."""
    browser = browser_type.launch(**browser_type_launch_args)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="session")
def browser(request: pytest.FixtureRequest, browser: Browser) -> Browser:
    """The standard browser, or the "safer" one when a test parametrises `browser`."""
    level = getattr(request, "param", "standard")
    if level == "safer":
        safer: Browser = request.getfixturevalue("safer_browser")
        return safer
    assert level == "standard", level
    return browser


def security_level(request: pytest.FixtureRequest) -> str:
    """The level the test runs at: its `browser` parameter, "standard" without one."""
    callspec = getattr(request.node, "callspec", None)
    return str(callspec.params.get("browser", "standard")) if callspec else "standard"


def is_safer(browser: Browser) -> bool:
    """Whether pages of `browser` lack WebAssembly (the "safer" level)."""
    context = browser.new_context()
    try:
        kind = context.new_page().evaluate("typeof WebAssembly")
    finally:
        context.close()
    return kind == "undefined"


@pytest.fixture(autouse=True)
def at_the_safer_level(request: pytest.FixtureRequest) -> Iterator[None]:
    """For a test at the "safer" level: check that its browser has no WebAssembly, and let
    expect() wait as long as a page state may take there (Argon2id in plain JavaScript
    takes tens of seconds)."""
    if security_level(request) != "safer":
        yield
        return
    browser: Browser = request.getfixturevalue("browser")
    assert is_safer(browser), "WebAssembly is still there at the safer level"
    expect.set_options(timeout=TIMEOUT_MS)
    try:
        yield
    finally:
        expect.set_options(timeout=EXPECT_TIMEOUT_MS)


@pytest.fixture(scope="session")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the session: proof of work off, rate limits off."""
    yield from fixture_server(tmp_path_factory, "web-server")


@pytest.fixture
def new_context(browser: Browser, web_server: ServerProcess) -> Iterator[NewContext]:
    """Make guarded browser contexts (fresh profile: no storage shared with others)."""
    made: list[tuple[BrowserContext, Guard]] = []

    def make(
        using: Browser | None = None, *, stamp: bool = True, **options: Any
    ) -> tuple[BrowserContext, Guard]:
        """A context of `using`, the test's own browser by default; `stamp` (the default,
        as in the product): its reveal page starts with a stamp (else with the challenge)."""
        options.setdefault("viewport", DESKTOP)
        options.setdefault("accept_downloads", True)
        context = (using or browser).new_context(**options)
        if not stamp:
            context.add_init_script(STAMP_OFF)
        context.set_default_timeout(TIMEOUT_MS)
        guard = Guard(web_server.url)
        guard.watch(context)
        made.append((context, guard))
        return context, guard

    yield make
    for context, _ in made:
        context.close()
    for _, guard in made:
        guard.check()


@pytest.fixture
def guarded(new_context: NewContext) -> tuple[Page, Guard]:
    """A page in a fresh guarded context, and its guard."""
    context, guard = new_context()
    return context.new_page(), guard
