"""The pages work from an installed wheel, not only from the source tree: build the wheel,
unpack it, run the server from it, and load, create and reveal in Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser

from atopos.server.pages import PAGES, load_assets
from tests.browser.harness import Guard, create_text_secret, reveal_text, wait_for_state
from tests.servers import free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).with_name("uv")
POW_OFF = ("--pow-bits", "0")
_SERVE = "import sys; from atopos.cli.main import main; sys.argv[0] = 'atopos'; main()"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, unpacked as an installer would put it in site-packages."""
    if not UV.exists():
        pytest.skip("uv (installed by `make test`) is needed to build the wheel")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [str(UV), "build", "--wheel", "--out-dir", str(out), "--quiet", str(ROOT)],
        check=True,
        timeout=300,
    )
    (wheel,) = out.glob("atopos-*.whl")
    site = out / "site-packages"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


@pytest.fixture(scope="module")
def wheel_server(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # PYTHONPATH goes before the editable install's path entry, so `atopos` (and its web
    # files) come from the unpacked wheel; the test checks that below.
    env = {**os.environ, "PYTHONPATH": str(installed), "ATOPOS_RATE_LIMIT": "0"}
    where = subprocess.run(
        [sys.executable, "-c", "import atopos.server.pages as m; print(m.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(installed), where
    port = free_port()
    data = tmp_path_factory.mktemp("wheel-data")
    log = (data / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVE, "serve", "--port", str(port), "--data", str(data), *POW_OFF],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


def test_wheel_contains_every_page_and_asset(installed: Path) -> None:
    web = installed / "atopos" / "web"
    for name in PAGES.values():
        assert (web / "pages" / name).is_file()
    for path, asset in load_assets().items():
        assert (web / path).read_bytes() == asset.body, path


def test_pages_load_and_work_from_the_installed_wheel(browser: Browser, wheel_server: str) -> None:
    for path in (
        "/",
        "/static/js/envelope.js",
        "/static/vendor/hash-wasm-4.13.0/argon2.umd.min.js",
    ):
        assert httpx.get(f"{wheel_server}{path}", timeout=10).status_code == 200
    context = browser.new_context()
    guard = Guard(wheel_server)
    guard.watch(context)
    try:
        page = context.new_page()
        links = create_text_secret(page, wheel_server, "from the wheel", passphrase="wheel")
        page.goto(links.share)
        page.get_by_role("button", name="Reveal secret").click()
        page.get_by_label("Passphrase").fill("wheel")
        page.get_by_role("button", name="Unlock").click()
        wait_for_state(page, "text")
        assert page.locator("#secret-output").text_content() == "from the wheel"
        other = context.new_page()
        assert reveal_text(other, create_text_secret(other, wheel_server, "again").share) == "again"
    finally:
        context.close()
    guard.check()
