"""The pages and assets over plain HTTP: security headers on every one, media types,
404 for anything not in the asset table (path traversal included)."""

from __future__ import annotations

import http.client
import re
from urllib.parse import urlsplit

import httpx
import pytest

from atopos.server.middleware import CONTENT_SECURITY_POLICY
from atopos.server.pages import ASSET_MEDIA_TYPES, load_assets
from tests.servers import ServerProcess

# Written out in full: a change to the policy must be a deliberate change to this test.
EXPECTED_CSP = (
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
    "img-src 'self' data: blob:; connect-src 'self'; worker-src 'self'; manifest-src 'self'; "
    "frame-ancestors 'none'; form-action 'none'; base-uri 'none'"
)
SECRET_ID = "AAAAAAAAAAAAAAAAAAAAAA"
PAGES = ["/", f"/s/{SECRET_ID}", f"/m/{SECRET_ID}"]
ASSETS = sorted(load_assets())


def assert_security_headers(response: httpx.Response) -> None:
    headers = response.headers
    assert headers["content-security-policy"] == EXPECTED_CSP
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"


def test_the_policy_is_the_one_the_middleware_sets() -> None:
    assert CONTENT_SECURITY_POLICY == EXPECTED_CSP
    for forbidden in ("unsafe-inline", "unsafe-eval'", "*", "http:", "https:"):
        assert forbidden not in EXPECTED_CSP.replace("'wasm-unsafe-eval'", "")


@pytest.mark.parametrize("path", PAGES)
def test_every_page_is_html_with_the_csp(web_server: ServerProcess, path: str) -> None:
    response = httpx.get(f"{web_server.url}{path}", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert_security_headers(response)
    # Nothing inline for the CSP to block: no inline scripts, styles or handlers.
    html = response.text
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, flags=re.DOTALL)
    assert scripts == [""], "one external module script, no inline code"
    assert re.search(r'<script type="module" src="(\.\./)?static/js/[a-z]+-page\.js">', html)
    assert "<style" not in html
    assert not re.search(r"<[^>]*\s(on[a-z]+|style)\s*=", html)


def test_pages_are_the_same_for_any_id(web_server: ServerProcess) -> None:
    """Serving a page looks nothing up: it cannot tell whether a secret exists."""
    first = httpx.get(f"{web_server.url}/s/{SECRET_ID}", timeout=10).content
    other = httpx.get(f"{web_server.url}/s/BBBBBBBBBBBBBBBBBBBBBB", timeout=10).content
    assert first == other


@pytest.mark.parametrize("path", ASSETS)
def test_every_asset_has_its_media_type_and_the_csp(web_server: ServerProcess, path: str) -> None:
    response = httpx.get(f"{web_server.url}/static/{path}", timeout=10)
    assert response.status_code == 200
    suffix = "." + path.rsplit(".", 1)[-1]
    assert response.headers["content-type"] == ASSET_MEDIA_TYPES[suffix]
    assert_security_headers(response)


def test_scripts_are_served_as_javascript() -> None:
    assert ASSET_MEDIA_TYPES[".js"] == ASSET_MEDIA_TYPES[".mjs"] == "text/javascript; charset=utf-8"
    assert ASSET_MEDIA_TYPES[".wasm"] == "application/wasm"
    assert any(path.endswith(".mjs") for path in ASSETS)


def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET a path exactly as written (httpx would resolve `..` before sending)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(
    "path",
    [
        "/static/",
        "/static/js/nothing-here.js",
        "/static/vendor/README.md",
        "/static/vendor/hash-wasm-4.13.0/LICENSE",
        "/static/pages/create.html",
        "/static/__init__.py",
        "/static/../server/app.py",
        "/static/js/../../server/pages.py",
        "/static/%2e%2e/server/pages.py",
        "/static/js/%2e%2e/%2e%2e/__init__.py",
        "/static/..%2fserver%2fapp.py",
        "/static//etc/passwd",
        "/static/js/envelope.js/..",
        "/static/JS/envelope.js",
    ],
)
def test_anything_outside_the_asset_table_is_404(web_server: ServerProcess, path: str) -> None:
    status, body = raw_get(web_server.url, path)
    assert status == 404
    assert b"import" not in body
    assert b"def " not in body


def test_unknown_asset_answer_is_json_with_the_csp(web_server: ServerProcess) -> None:
    response = httpx.get(f"{web_server.url}/static/js/missing.js", timeout=10)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert_security_headers(response)
