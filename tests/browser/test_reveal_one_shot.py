"""The reveal page takes two requests (the one-shot ticket step, docs/protocol/access.md
"One shot") and still reveals through a server without it: one that refuses `reveal` with
422 (a server from before it) and one that ignores it and answers with a ticket. Each server
is a real in-process server behind a test-only ASGI wrapper (tests/older_servers.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from atopos.client.api import SecretsApi
from atopos.client.secrets import create_secret, reveal_secret
from atopos.errors import Gone
from atopos.server.config import ServerConfig, rate_limits
from tests.browser.conftest import DESKTOP, STAMP_OFF
from tests.browser.harness import TIMEOUT_MS, Guard, reveal_text, wait_for_state
from tests.older_servers import IgnoringOlderServer, RecordingServer, RefusingOlderServer
from tests.servers import ManualClock, in_process_server

STEPS = {
    "current": ["challenge", "ticket"],
    "refusing": ["challenge", "ticket", "ticket", "reveal"],
    "ignoring": ["challenge", "ticket", "reveal"],
}
_KINDS = {
    "current": RecordingServer,
    "refusing": RefusingOlderServer,
    "ignoring": IgnoringOlderServer,
}


@pytest.fixture(params=list(STEPS))
def served(
    request: pytest.FixtureRequest, tmp_path: Path, browser: Browser
) -> Iterator[tuple[str, str, RecordingServer, Page]]:
    """(kind, url, wrapper, guarded page) for a server answering the one-shot step as
    `kind` does."""
    wrapper = _KINDS[request.param]()
    config = ServerConfig(data_dir=tmp_path / "data", pow_bits=4, **rate_limits(0))
    with in_process_server(config, ManualClock(1_800_000_000), wrap=wrapper.around) as url:
        context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
        context.set_default_timeout(TIMEOUT_MS)
        # The walk these servers are about starts with the challenge (stamps: test_reveal_stamp).
        context.add_init_script(STAMP_OFF)
        guard = Guard(url)
        guard.allow_http_error(422)  # the refusing server's answer to reveal: true
        guard.watch(context)
        try:
            yield request.param, url, wrapper, context.new_page()
        finally:
            context.close()
        guard.check()


def test_the_reveal_page_reveals_text_through_every_server(
    served: tuple[str, str, RecordingServer, Page],
) -> None:
    kind, url, wrapper, page = served
    with SecretsApi(url) as api:
        made = create_secret(api, b"two requests, or more", expires_in=600)
    assert reveal_text(page, str(made.share_link)) == "two requests, or more"
    assert wrapper.steps == STEPS[kind]
    # The one view is spent.
    with SecretsApi(url) as api, pytest.raises(Gone):
        reveal_secret(api, made.share_link, bytearray().extend)


def test_the_reveal_page_streams_a_large_file_through_every_server(
    served: tuple[str, str, RecordingServer, Page], tmp_path: Path
) -> None:
    # Over 1 MiB the server streams the envelope, from either step.
    kind, url, wrapper, page = served
    content = os.urandom(2 * 1024 * 1024 + 5)
    source = tmp_path / "big.bin"
    source.write_bytes(content)
    with SecretsApi(url) as api:
        made = create_secret(api, source, expires_in=600)
    page.goto(str(made.share_link))
    wait_for_state(page, "ready")
    page.get_by_role("button", name="Reveal secret").click()
    wait_for_state(page, "file")
    expect(page.locator("#file-name")).to_have_text("big.bin")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Save file").click()
    saved = tmp_path / "saved.bin"
    download_info.value.save_as(saved)
    assert saved.read_bytes() == content
    assert wrapper.steps == STEPS[kind]
