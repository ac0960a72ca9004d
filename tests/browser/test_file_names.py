"""The name a revealed file is saved under: the reveal page refuses the sender's name by the
CLI's rule (`atopos.cli.output.safe_file_name`), so a bidi control cannot make
`invoice\u202efdp.exe` look like "invoiceexe.pdf" in the browser either."""

from __future__ import annotations

import sys
import unicodedata

import pytest
from playwright.sync_api import Page, expect

from atopos.cli.output import FALLBACK_FILE_NAME, safe_file_name
from tests.browser.conftest import NewContext
from tests.browser.harness import screenshot, wait_for_state
from tests.servers import ServerProcess

# Every code point except the surrogates (not characters; a name cannot hold one).
ALL_CHARACTERS = [c for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]


def reveal_file_named(page: Page, reader: Page, origin: str, name: str) -> None:
    page.goto(f"{origin}/")
    wait_for_state(page, "compose")
    page.get_by_text("File", exact=True).click()
    page.locator("#secret-file").set_input_files(
        {"name": name, "mimeType": "application/pdf", "buffer": b"%PDF-1.7 not really\n"}
    )
    page.get_by_role("button", name="Encrypt and create link").click()
    wait_for_state(page, "done")
    reader.goto(page.locator("#share-link").text_content() or "")
    reader.get_by_role("button", name="Reveal secret").click()
    wait_for_state(reader, "file")


@pytest.mark.parametrize(
    "name",
    [
        "invoice\u202efdp.exe",  # RIGHT-TO-LEFT OVERRIDE: displays as "invoiceexe.pdf"
        "invoice\u2067fdp.exe\u2069",  # RIGHT-TO-LEFT ISOLATE
        "report\u200b.pdf",  # ZERO WIDTH SPACE
        "two\u2028lines.pdf",  # LINE SEPARATOR
        "folder/report.pdf",
    ],
)
def test_a_misleading_file_name_is_not_used(
    new_context: NewContext, web_server: ServerProcess, name: str
) -> None:
    creator, _ = new_context()
    reader_context, _ = new_context()
    reader = reader_context.new_page()
    reveal_file_named(creator.new_page(), reader, web_server.url, name)
    expect(reader.locator("#file-name")).to_have_text(FALLBACK_FILE_NAME)
    expect(reader.locator("#file-name-refused")).to_be_visible()
    if "\u202e" in name:
        screenshot(reader, "reveal-file-name-refused")
    with reader.expect_download() as download_info:
        reader.get_by_role("button", name="Save file").click()
    assert download_info.value.suggested_filename == FALLBACK_FILE_NAME


def test_a_plain_file_name_is_kept(new_context: NewContext, web_server: ServerProcess) -> None:
    creator, _ = new_context()
    reader_context, _ = new_context()
    reader = reader_context.new_page()
    reveal_file_named(creator.new_page(), reader, web_server.url, "Rechnung März (2).pdf")
    expect(reader.locator("#file-name")).to_have_text("Rechnung März (2).pdf")
    expect(reader.locator("#file-name-refused")).to_be_hidden()


def test_the_page_and_the_cli_refuse_the_same_characters(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    context, _ = new_context()
    page = context.new_page()
    page.goto(f"{web_server.url}/")
    refused_by_page = set(
        page.evaluate(
            """async (fallback) => {
                const { safeFileName } = await import("./static/js/file-name.js");
                const refused = [];
                for (let c = 0; c <= 0x10ffff; c++) {
                    if (c >= 0xd800 && c <= 0xdfff) continue;
                    const name = "a" + String.fromCodePoint(c) + "b";
                    if (safeFileName(name) === fallback) refused.push(c);
                }
                return refused;
            }""",
            FALLBACK_FILE_NAME,
        )
    )
    refused_by_cli = {
        c for c in ALL_CHARACTERS if safe_file_name(f"a{chr(c)}b") == FALLBACK_FILE_NAME
    }
    assert 0x202E in refused_by_cli
    assert refused_by_cli <= refused_by_page, [hex(c) for c in refused_by_cli - refused_by_page]
    # Chromium's Unicode may be newer than Python's (format controls added since, such as the
    # Egyptian hieroglyph ones of Unicode 15): the page may also refuse what Python does not
    # know yet, and nothing else.
    newer = refused_by_page - refused_by_cli
    assert all(unicodedata.category(chr(c)) == "Cn" for c in newer), [hex(c) for c in newer]
    assert len(newer) < 100
    for name in ("", ".", "..", "a" * 255, "é" * 128, "ab\\c", "x" * 256):
        verdict = page.evaluate(
            "async (name) => (await import('./static/js/file-name.js')).safeFileName(name)", name
        )
        assert verdict == safe_file_name(name), name
