"""Usable by a person: phone-sized screens without horizontal scrolling, every control
labelled and reachable in a sensible order with the keyboard, Enter and Space working,
and a dark theme that follows the system setting."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.conftest import PHONE, NewContext
from tests.browser.harness import create_text_secret, screenshot, wait_for_state
from tests.servers import ServerProcess

_NO_HORIZONTAL_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"

# Every visible form control must have an accessible name from a <label>, aria-label or
# aria-labelledby (placeholders do not count).
_UNLABELLED_CONTROLS = """() => {
  const controls = document.querySelectorAll("input, select, textarea, button");
  const named = (el) => el.getAttribute("aria-label") || el.getAttribute("aria-labelledby");
  return Array.from(controls)
    .filter((el) => el.closest("[hidden]") === null)
    .filter((el) => {
      if (el.tagName === "BUTTON") return el.textContent.trim() === "" && !named(el);
      return el.labels.length === 0 && !named(el);
    })
    .map((el) => el.id || el.outerHTML);
}"""


def focused_id(page: Page) -> str:
    value: str = page.evaluate(
        "document.activeElement.id || document.activeElement.textContent.trim()"
    )
    return value


def assert_fits_phone(page: Page, name: str) -> None:
    assert page.evaluate(_NO_HORIZONTAL_SCROLL), f"{name} scrolls sideways on a phone"
    screenshot(page, f"phone-{name}")


def test_pages_fit_a_phone_screen(new_context: NewContext, web_server: ServerProcess) -> None:
    context, guard = new_context(
        viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2
    )
    guard.allow_http_error(404)
    page = context.new_page()
    page.goto(f"{web_server.url}/")
    wait_for_state(page, "compose")
    assert_fits_phone(page, "create")
    links = create_text_secret(page, web_server.url, "small screens " * 40)
    assert_fits_phone(page, "create-done")

    reader = context.new_page()
    reader.goto(links.manage)
    wait_for_state(reader, "status")
    assert_fits_phone(reader, "manage")
    reader.goto(links.share)
    wait_for_state(reader, "ready")
    assert_fits_phone(reader, "reveal")
    reader.get_by_role("button", name="Reveal secret").click()
    wait_for_state(reader, "text")
    assert_fits_phone(reader, "reveal-text")
    again = context.new_page()
    again.goto(links.share)
    again.get_by_role("button", name="Reveal secret").click()
    wait_for_state(again, "gone")
    assert_fits_phone(again, "reveal-gone")


def test_every_control_has_a_label(new_context: NewContext, web_server: ServerProcess) -> None:
    context, _ = new_context()
    page = context.new_page()
    page.goto(f"{web_server.url}/")
    assert page.evaluate(_UNLABELLED_CONTROLS) == []
    page.get_by_text("File", exact=True).click()
    assert page.evaluate(_UNLABELLED_CONTROLS) == []
    page.get_by_text("Text", exact=True).click()
    links = create_text_secret(page, web_server.url, "labels", passphrase="pass")
    assert page.evaluate(_UNLABELLED_CONTROLS) == []
    for link, ready in ((links.share, "ready"), (links.manage, "status")):
        page.goto(link)
        wait_for_state(page, ready)
        assert page.evaluate(_UNLABELLED_CONTROLS) == []
    page.goto(links.share)
    page.get_by_role("button", name="Reveal secret").click()
    wait_for_state(page, "passphrase")
    assert page.evaluate(_UNLABELLED_CONTROLS) == []


def test_create_and_reveal_with_the_keyboard_only(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    context, _ = new_context()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=web_server.url)
    page = context.new_page()
    page.goto(f"{web_server.url}/")
    wait_for_state(page, "compose")

    order = []
    for _ in range(8):
        page.keyboard.press("Tab")
        order.append(focused_id(page))
    assert order == [
        "Atopos",  # the home link in the header
        "kind-text",
        "secret-text",
        "expires",
        "views",
        "passphrase",
        "device-code",
        "create-button",
    ]
    page.focus("#secret-text")
    page.keyboard.type("typed, never clicked")
    page.keyboard.press("Tab")
    page.keyboard.press("ArrowDown")  # a select changes with the arrow keys
    assert page.input_value("#expires") == "604800"
    page.focus("#create-button")
    page.keyboard.press("Enter")
    wait_for_state(page, "done")
    # Focus lands on the result's heading; the copy button is next and Space presses it.
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert focused_id(page) == "copy-share"
    page.keyboard.press("Space")
    expect(page.locator("#copy-share-status")).to_have_text("Copied")
    link = page.evaluate("navigator.clipboard.readText()")
    assert link == page.locator("#share-link").text_content()

    reader, _ = new_context()
    page = reader.new_page()
    page.goto(link)
    wait_for_state(page, "ready")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert focused_id(page) == "reveal-button"
    page.keyboard.press("Space")
    wait_for_state(page, "text")
    assert page.locator("#secret-output").text_content() == "typed, never clicked"

    # The file picker is reachable too: switching to "File" with the arrow keys.
    page.goto(f"{web_server.url}/")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("ArrowRight")
    assert page.is_checked("#kind-file")
    page.keyboard.press("Tab")
    assert focused_id(page) == "secret-file"


def test_dark_mode_follows_the_system(new_context: NewContext, web_server: ServerProcess) -> None:
    context, guard = new_context(color_scheme="dark")
    guard.allow_http_error(404)
    page = context.new_page()
    page.goto(f"{web_server.url}/")
    wait_for_state(page, "compose")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    text = page.evaluate("getComputedStyle(document.body).color")
    assert luminance(background) < 0.1 < 0.7 < luminance(text), (background, text)
    screenshot(page, "dark-create")
    links = create_text_secret(page, web_server.url, "in the dark", passphrase="x")
    screenshot(page, "dark-create-done")
    # The QR code keeps its white background and black modules whatever the theme.
    assert page.locator("#share-qr rect").get_attribute("fill") == "#ffffff"
    page.goto(links.share)
    wait_for_state(page, "ready")
    screenshot(page, "dark-reveal")
    page.get_by_role("button", name="Reveal secret").click()
    wait_for_state(page, "passphrase")
    page.get_by_label("Passphrase").fill("x")
    page.keyboard.press("Enter")
    wait_for_state(page, "text")
    screenshot(page, "dark-reveal-text")
    page.goto(links.manage)
    wait_for_state(page, "gone")


def luminance(css_color: str) -> float:
    """Relative luminance (WCAG) of an `rgb(r, g, b)` string."""
    channels = [int(part) / 255 for part in css_color[css_color.index("(") + 1 : -1].split(",")[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
