"""The browser and the Python CLI read each other's secrets: same envelope, same links,
same access path. Passphrase cases use the CLI's default Argon2id cost (64 MiB, t=3, p=4),
so the vendored WASM build is checked against the `cryptography` one at full size."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser.conftest import NewContext
from tests.browser.harness import (
    Guard,
    create_text_secret,
    reveal_text,
    screenshot,
    wait_for_state,
)
from tests.servers import ATOPOS, ServerProcess


def cli(
    *args: str, stdin: bytes = b"", server: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    command = [ATOPOS, *(["--server", server] if server else []), *args]
    result = subprocess.run(command, input=stdin, capture_output=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result


def test_browser_text_reveals_with_the_cli(
    guarded: tuple[Page, Guard], web_server: ServerProcess
) -> None:
    page, _ = guarded
    secret = "made in Chromium, read in Python ✓"
    links = create_text_secret(page, web_server.url, secret)
    assert cli("secret", "reveal", links.share).stdout == secret.encode()


def test_cli_text_reveals_in_the_browser(
    guarded: tuple[Page, Guard], web_server: ServerProcess
) -> None:
    page, _ = guarded
    secret = "made in Python, read in Chromium\n\twith a tab and ünïcødé"
    link = cli("secret", "create", stdin=secret.encode(), server=web_server.url).stdout
    assert reveal_text(page, link.decode().strip()) == secret


def test_cli_passphrase_secret_reveals_in_the_browser(
    guarded: tuple[Page, Guard], web_server: ServerProcess, tmp_path: Path
) -> None:
    page, _ = guarded
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text("Café naïve\n", encoding="utf-8")
    link = (
        cli(
            "secret",
            "create",
            "--passphrase-file",
            str(passphrase_file),
            stdin=b"sealed by the CLI",
            server=web_server.url,
        )
        .stdout.decode()
        .strip()
    )
    page.goto(link)
    page.get_by_role("button", name="Reveal secret").click()
    wait_for_state(page, "passphrase")
    # NFD on this side, NFC on the CLI's: both normalise to the same key.
    page.get_by_label("Passphrase").fill("Cafe\u0301 nai\u0308ve")
    page.get_by_role("button", name="Unlock").click()
    wait_for_state(page, "text")
    assert page.locator("#secret-output").text_content() == "sealed by the CLI"


def test_cli_file_reveals_in_the_browser(
    guarded: tuple[Page, Guard], web_server: ServerProcess, tmp_path: Path
) -> None:
    page, _ = guarded
    content = os.urandom(300_000)
    source = tmp_path / "report 2026.pdf"
    source.write_bytes(content)
    link = cli("secret", "create", "--file", str(source), server=web_server.url).stdout
    page.goto(link.decode().strip())
    page.get_by_role("button", name="Reveal secret").click()
    wait_for_state(page, "file")
    expect(page.locator("#file-name")).to_have_text("report 2026.pdf")
    expect(page.locator("#file-type")).to_have_text("application/pdf")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Save file").click()
    saved = tmp_path / "saved"
    download_info.value.save_as(saved)
    assert saved.read_bytes() == content


def test_browser_file_with_passphrase_reveals_with_the_cli(
    new_context: NewContext, web_server: ServerProcess, tmp_path: Path
) -> None:
    context, _ = new_context()
    page = context.new_page()
    content = os.urandom(150_000)
    source = tmp_path / "keys.tar"
    source.write_bytes(content)
    page.goto(f"{web_server.url}/")
    page.get_by_text("File", exact=True).click()
    page.locator("#secret-file").set_input_files(str(source))
    page.get_by_label("Passphrase").fill("open sesame")
    page.get_by_role("button", name="Encrypt and create link").click()
    wait_for_state(page, "done")
    screenshot(page, "create-file-done")
    link = page.locator("#share-link").text_content() or ""

    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text("open sesame")
    out = tmp_path / "out"
    out.mkdir()
    cli("secret", "reveal", link, "--passphrase-file", str(passphrase_file), "-o", str(out))
    assert (out / "keys.tar").read_bytes() == content
