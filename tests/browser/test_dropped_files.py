"""Dropping files on the create page: one secret holds one file, so several dropped at once
are refused with a notice instead of one of them being taken silently."""

from __future__ import annotations

from playwright.sync_api import JSHandle, Page, expect

from tests.browser.conftest import NewContext
from tests.browser.harness import screenshot, wait_for_state
from tests.servers import ServerProcess


def files_dragged_in(page: Page, names: list[str]) -> JSHandle:
    """What the browser hands the page when these files are dragged in from the desktop."""
    return page.evaluate_handle(
        """(names) => {
            const transfer = new DataTransfer();
            for (const name of names) transfer.items.add(new File([name], name));
            return transfer;
        }""",
        names,
    )


def drop(page: Page, names: list[str]) -> None:
    transfer = files_dragged_in(page, names)
    page.dispatch_event("#drop-zone", "dragover", {"dataTransfer": transfer})
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})


def test_several_dropped_files_are_refused_with_a_notice(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    context, guard = new_context()
    page = context.new_page()
    page.goto(f"{web_server.url}/")
    wait_for_state(page, "compose")
    drop(page, ["a.txt", "b.txt", "c.txt"])
    notice = page.locator("#form-error")
    expect(notice).to_be_visible()
    expect(notice).to_have_text(
        "3 files were dropped, and a secret holds one file. Drop one file, or put them in one"
        " archive (such as a .zip) first. Nothing was added."
    )
    expect(page.locator("#file-chosen")).to_be_hidden()
    screenshot(page, "create-several-files-dropped")
    # Nothing is sent: submitting now asks for a file.
    page.get_by_role("button", name="Encrypt and create link").click()
    expect(notice).to_contain_text("Choose a file first")
    # One file is then taken, and the notice goes.
    drop(page, ["only.txt"])
    expect(page.locator("#file-chosen")).to_contain_text("only.txt")
    expect(notice).to_be_hidden()
    # Several dropped after a choice leave the choice as it was.
    drop(page, ["x.txt", "y.txt"])
    expect(notice).to_contain_text("2 files were dropped")
    expect(page.locator("#file-chosen")).to_contain_text("only.txt")
    assert not any("/api/" in request for request in guard.requests)
