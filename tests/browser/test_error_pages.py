"""Browsers get HTML error pages, API clients keep JSON; a trailing slash never redirects to
another scheme or host (Starlette's slash redirect wrote `http://` behind a TLS proxy)."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import NewContext
from tests.browser.harness import screenshot, wait_for_state
from tests.browser.test_page_http import SECRET_ID, assert_security_headers
from tests.servers import ServerProcess

# What Chromium sends when it navigates to an address.
BROWSER_ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
)
# What a TLS proxy in front of the node passes on: the public host, and that it was HTTPS.
BEHIND_TLS = {"host": "secrets.example", "x-forwarded-proto": "https"}


def test_an_unknown_address_in_a_browser_is_an_html_page(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    context, guard = new_context()
    guard.allow_http_error(404)
    page = context.new_page()
    response = page.goto(f"{web_server.url}/no/such/page")
    assert response is not None
    assert response.status == 404
    assert response.header_value("content-type") == "text/html; charset=utf-8"
    assert response.header_value("x-robots-tag") == "noindex, nofollow"
    expect(page.get_by_role("heading", level=1)).to_have_text("There is nothing here")
    expect(page).to_have_title("Atopos · There is nothing here")
    screenshot(page, "error-page-404")
    # Its assets resolve from a nested path: the site's stylesheet applies (the body is a flex
    # column only with it), and the link leads to the create page.
    assert page.locator("body").evaluate("e => getComputedStyle(e).display") == "flex"
    page.get_by_role("link", name="Share a secret").click()
    wait_for_state(page, "compose")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nothing-here", 404),
        ("GET", "/a/%3Cb%3Ezz-reflected%3C%2Fb%3E/?zz-reflected=1", 404),
        ("GET", "/static/js/none.js", 404),
        ("POST", "/device", 405),
        ("DELETE", f"/s/{SECRET_ID}", 405),
    ],
)
def test_browser_errors_are_html_with_the_same_headers(
    web_server: ServerProcess, method: str, path: str, status: int
) -> None:
    response = httpx.request(
        method, f"{web_server.url}{path}", headers={"accept": BROWSER_ACCEPT}, timeout=10
    )
    assert response.status_code == status
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert_security_headers(response)
    assert response.text.startswith("<!doctype html>")
    if status == 405:
        assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD"}
    # Nothing of the request is written into the page.
    assert "zz-reflected" not in response.text


@pytest.mark.parametrize(
    ("method", "path", "accept", "status"),
    [
        ("GET", "/api/v1/nothing", BROWSER_ACCEPT, 404),
        ("GET", f"/api/v1/secrets/{SECRET_ID}/challenge", BROWSER_ACCEPT, 405),
        ("GET", "/nothing-here", "application/json", 404),
        ("GET", "/nothing-here", "*/*", 404),
        ("POST", "/device", None, 405),
    ],
)
def test_api_clients_keep_json(
    web_server: ServerProcess, method: str, path: str, accept: str | None, status: int
) -> None:
    headers = {} if accept is None else {"accept": accept}
    response = httpx.request(method, f"{web_server.url}{path}", headers=headers, timeout=10)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] in ("not_found", "method_not_allowed")
    assert_security_headers(response)


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/device/", "../device"),
        (f"/s/{SECRET_ID}/", f"../{SECRET_ID}"),
        (f"/m/{SECRET_ID}/?from=chat", f"../{SECRET_ID}?from=chat"),
    ],
)
def test_a_trailing_slash_redirects_relatively(
    web_server: ServerProcess, path: str, location: str
) -> None:
    response = httpx.get(f"{web_server.url}{path}", headers=BEHIND_TLS, timeout=10)
    assert response.status_code == 307
    assert response.headers["location"] == location
    # Resolved by the browser against the address it used: same scheme, same host.
    public = urljoin(f"https://secrets.example{path}", response.headers["location"])
    assert urlsplit(public).scheme == "https"
    assert urlsplit(public).netloc == "secrets.example"
    assert urlsplit(public).path == path.split("?")[0].rstrip("/")


@pytest.mark.parametrize("path", ["/healthz/", "/openapi.json/", "/api/v1/secrets/"])
def test_no_other_address_redirects_with_a_trailing_slash(
    web_server: ServerProcess, path: str
) -> None:
    for method in ("GET", "POST"):
        response = httpx.request(method, f"{web_server.url}{path}", headers=BEHIND_TLS, timeout=10)
        assert response.status_code in (404, 405), (method, path, response.headers)
        assert "location" not in response.headers


def test_a_share_link_with_a_trailing_slash_keeps_its_key(
    new_context: NewContext, web_server: ServerProcess
) -> None:
    context, _ = new_context()
    page = context.new_page()
    page.goto(f"{web_server.url}/s/{SECRET_ID}/#{'A' * 43}")
    wait_for_state(page, "ready")
    assert page.url == f"{web_server.url}/s/{SECRET_ID}"
