"""Response-header audit of every route, every method it answers and every status it can
give, against the real `atopos serve` (so uvicorn's own headers are in the picture).

Each response must carry the security headers exactly once with exactly these values, and
nothing that names the software. The table of cases is checked against the application's
own route table, so a new route without a case here fails the audit. 503 and 507 are
audited in test_disk_full.py, 500 with a failing application below.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route, WebSocketRoute

from atopos.crypto.base64url import b64url_encode
from atopos.server.app import create_app
from atopos.server.config import ServerConfig
from atopos.server.middleware import CONTENT_SECURITY_POLICY, EdgeMiddleware
from atopos.server.pages import PAGES, load_assets
from tests.api_client import OCTETS, access_params, access_proof, create, envelope, ticket
from tests.servers import ServerProcess

# Pinned here on purpose: changing the policy must change this test too.
EXPECTED_CSP = (
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
    "img-src 'self' data: blob:; connect-src 'self'; worker-src 'self'; manifest-src 'self'; "
    "frame-ancestors 'none'; form-action 'none'; base-uri 'none'"
)
EXPECTED = {
    "content-security-policy": EXPECTED_CSP,
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}
# Headers that would name the software or its version.
TELLTALES = ("server", "x-powered-by", "x-aspnet-version", "via", "x-runtime")
UNKNOWN_ID = b64url_encode(bytes(16))

# (name, method, path, request kwargs, expected status). {sid}: a live secret; {token}:
# its manage token; {ticket}: a fresh ticket for it; {challenge}: a fresh challenge.
CASES: list[tuple[str, str, str, dict[str, Any], int]] = [
    ("create", "POST", "/api/v1/secrets", {"body": "envelope"}, 201),
    ("create: bad envelope", "POST", "/api/v1/secrets", {"content": b"\0" * 64}, 422),
    ("create: bad query", "POST", "/api/v1/secrets?views=0", {"body": "envelope"}, 422),
    ("create: wrong method", "PUT", "/api/v1/secrets", {}, 405),
    ("challenge", "POST", "/api/v1/secrets/{sid}/challenge", {}, 200),
    ("challenge: unknown", "POST", f"/api/v1/secrets/{UNKNOWN_ID}/challenge", {}, 404),
    ("challenge: malformed id", "POST", "/api/v1/secrets/x!/challenge", {}, 404),
    ("challenge: wrong method", "GET", "/api/v1/secrets/{sid}/challenge", {}, 405),
    (
        "ticket",
        "POST",
        "/api/v1/secrets/{sid}/ticket",
        {"json": {"challenge": "{challenge}", "nonce": 0}},
        200,
    ),
    ("ticket: not JSON", "POST", "/api/v1/secrets/{sid}/ticket", {"content": b"{"}, 422),
    (
        "ticket: forged",
        "POST",
        "/api/v1/secrets/{sid}/ticket",
        {"json": {"challenge": "A" * 68, "nonce": 0}},
        403,
    ),
    ("reveal", "POST", "/api/v1/secrets/{sid}/reveal", {"json": {"ticket": "{ticket}"}}, 200),
    (
        "reveal: bad ticket",
        "POST",
        "/api/v1/secrets/{sid}/reveal",
        {"json": {"ticket": "B" * 78}},
        403,
    ),
    (
        "reveal: too large",
        "POST",
        "/api/v1/secrets/{sid}/reveal",
        {"json": {"ticket": "x" * 10_000}},
        413,
    ),
    ("reveal: wrong method", "GET", "/api/v1/secrets/{sid}/reveal", {}, 405),
    ("status", "GET", "/api/v1/secrets/{sid}/status", {"auth": True}, 200),
    ("status: no token", "GET", "/api/v1/secrets/{sid}/status", {}, 403),
    ("status: unknown", "GET", f"/api/v1/secrets/{UNKNOWN_ID}/status", {"auth": True}, 404),
    ("status: wrong method", "POST", "/api/v1/secrets/{sid}/status", {}, 405),
    ("receipts", "GET", "/api/v1/secrets/{sid}/receipts", {"auth": True}, 200),
    ("receipts: no token", "GET", "/api/v1/secrets/{sid}/receipts", {}, 403),
    ("receipts: unknown", "GET", f"/api/v1/secrets/{UNKNOWN_ID}/receipts", {"auth": True}, 404),
    ("receipts: wrong method", "POST", "/api/v1/secrets/{sid}/receipts", {}, 405),
    ("delete: no token", "DELETE", "/api/v1/secrets/{sid}", {}, 403),
    ("delete", "DELETE", "/api/v1/secrets/{sid}", {"auth": True}, 204),
    ("delete: wrong method", "GET", "/api/v1/secrets/{sid}", {}, 405),
    ("healthz", "GET", "/healthz", {}, 200),
    ("healthz: HEAD", "HEAD", "/healthz", {}, 200),
    ("healthz: wrong method", "POST", "/healthz", {}, 405),
    ("openapi", "GET", "/openapi.json", {}, 200),
    ("openapi: wrong method", "DELETE", "/openapi.json", {}, 405),
    ("static: unknown", "GET", "/static/js/nope.js", {}, 404),
    ("static: traversal", "GET", "/static/../pages/create.html", {}, 404),
    ("static: page file", "GET", "/static/pages/create.html", {}, 404),
    ("static: wrong method", "POST", "/static/css/atopos.css", {}, 405),
    ("unknown path", "GET", "/no/such/thing", {}, 404),
    ("unknown API path", "POST", "/api/v1/nothing", {}, 404),
    ("reveal page of anything", "GET", "/s/not-even-an-id", {}, 200),
    ("request: not JSON", "POST", "/api/v1/requests", {"content": b"{"}, 422),
    ("request: wrong method", "GET", "/api/v1/requests", {}, 405),
    ("request status: unknown", "GET", f"/api/v1/requests/{UNKNOWN_ID}", {}, 404),
    # DELETE is the cancel route (requests.md 4.4) since the request could be cancelled.
    ("request status: wrong method", "PUT", f"/api/v1/requests/{UNKNOWN_ID}", {}, 405),
    ("request cancel: unknown", "DELETE", f"/api/v1/requests/{UNKNOWN_ID}", {}, 404),
    ("request fill: not an envelope", "POST", "/api/v1/requests/{sid}/fill", {}, 422),
    ("request fill: wrong method", "GET", "/api/v1/requests/{sid}/fill", {}, 405),
    ("room challenge", "POST", f"/api/v1/rooms/{UNKNOWN_ID}/challenge", {}, 200),
    ("room challenge: wrong method", "GET", f"/api/v1/rooms/{UNKNOWN_ID}/challenge", {}, 405),
    ("room create: not JSON", "POST", "/api/v1/rooms", {"content": b"{"}, 422),
    ("room create: wrong method", "GET", "/api/v1/rooms", {}, 405),
]
# Every page the server has: GET and HEAD serve it, anything else is 405.
for template in PAGES:
    page = template.replace("{id}", "{sid}")
    CASES += [
        (f"page {template}", "GET", page, {}, 200),
        (f"page {template}: HEAD", "HEAD", page, {}, 200),
        (f"page {template}: wrong method", "POST", page, {}, 405),
    ]
    # With a trailing slash: a relative redirect to the page (server/pages.py).
    if template != "/":
        CASES += [
            (f"page {template}/", "GET", page + "/", {}, 307),
            (f"page {template}/: HEAD", "HEAD", page + "/", {}, 307),
        ]


def _audit(response: httpx.Response, what: str) -> None:
    headers = response.headers
    for name, value in EXPECTED.items():
        values = headers.get_list(name)
        assert values == [value], f"{what}: {name} is {values}"
    for name in TELLTALES:
        assert name not in headers, f"{what}: {name}: {headers[name]}"
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in csp
    assert "'unsafe-eval'" not in csp
    if response.request.method != "HEAD" and response.status_code != 204:
        assert "content-type" in headers, what
    if response.status_code >= 400 and response.request.method != "HEAD":
        assert headers["content-type"] == "application/json", what
        assert set(response.json()) == {"error", "message"}, what
        assert "Traceback" not in response.text


@pytest.fixture(scope="module")
def audited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("headers")
    server = ServerProcess(data_dir=root / "data", log_path=root / "server.log").start()
    try:
        yield server
    finally:
        server.stop()


def test_the_cases_cover_every_route_and_method(tmp_path: Path) -> None:
    app = create_app(ServerConfig(data_dir=tmp_path / "data"))
    assert isinstance(app, EdgeMiddleware)
    routes = app.app.routes  # type: ignore[attr-defined]
    served = set()
    for route in routes:
        if isinstance(route, WebSocketRoute):
            continue  # no HTTP answer: the room relay's own tests audit its handshake
        assert isinstance(route, Route)
        for method in route.methods or ():
            served.add((method, route.path))
    covered = set()
    for _, method, path, _, status in CASES:
        if status == 405:
            continue
        for route in routes:
            if isinstance(route, WebSocketRoute):
                continue
            match, _ = route.matches(
                {
                    "type": "http",
                    "method": method,
                    "path": path.format(sid=UNKNOWN_ID, token="t", ticket="t", challenge="c"),
                }
            )
            if match.name == "FULL":
                covered.add((method, route.path))
    # HEAD is answered wherever GET is; the static route is audited asset by asset below.
    missing = {
        (method, path)
        for method, path in served - covered
        if not (method == "HEAD" and ("GET", path) in covered)
    } - {("GET", "/static/{path:path}")}
    assert missing == set(), f"routes without an audit case: {sorted(missing)}"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_every_route_and_status_carries_exactly_the_security_headers(
    audited_server: ServerProcess,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    expected: int,
) -> None:
    url = audited_server.url
    with httpx.Client(timeout=30) as client:
        created = create(client, url, envelope(b"audit")[0], views=3)
        sid, token = str(created["id"]), str(created["manage_token"])
        request: dict[str, Any] = {"headers": dict(kwargs.get("headers", {}))}
        if kwargs.get("body") == "envelope":
            request["content"] = envelope(b"new")[0]
            request["headers"].update(OCTETS)
        if "content" in kwargs:
            request["content"] = kwargs["content"]
            request["headers"].update(OCTETS)
        if path.split("?")[0] == "/api/v1/secrets":
            # Every create carries an access key: each case fails (or not) for its own reason.
            key = access_params(request.get("content", b""))["access_key"]
            path += ("&" if "?" in path else "?") + f"access_key={key}"
        if kwargs.get("auth"):
            request["headers"]["authorization"] = f"Bearer {token}"
        if "json" in kwargs:
            body = dict(kwargs["json"])
            if body.get("ticket") == "{ticket}":
                body["ticket"] = ticket(client, url, sid)
            if body.get("challenge") == "{challenge}":
                answer = client.post(f"{url}/api/v1/secrets/{sid}/challenge")
                body["challenge"] = answer.json()["challenge"]
                body["access_proof"] = access_proof(sid, body["challenge"])
            request["json"] = body
        response = client.request(method, url + path.format(sid=sid), **request)
    assert response.status_code == expected, response.text[:300]
    _audit(response, f"{method} {path} -> {expected}")


def test_every_static_asset_carries_the_headers_and_its_type(
    audited_server: ServerProcess,
) -> None:
    assets = load_assets()
    assert assets
    with httpx.Client(timeout=30) as client:
        for key, asset in assets.items():
            response = client.get(f"{audited_server.url}/static/{key}")
            assert response.status_code == 200, key
            assert response.headers["content-type"] == asset.media_type
            assert response.content == asset.body
            _audit(response, f"GET /static/{key}")


def test_pages_ask_robots_not_to_index_share_links(audited_server: ServerProcess) -> None:
    with httpx.Client(timeout=30) as client:
        for template in PAGES:
            path = template.replace("{id}", UNKNOWN_ID)
            response = client.get(audited_server.url + path)
            assert response.headers["content-type"] == "text/html; charset=utf-8"
            assert response.headers["x-robots-tag"] == "noindex, nofollow"


def test_a_rate_limited_answer_carries_the_headers_and_retry_after(tmp_path: Path) -> None:
    server = ServerProcess(
        data_dir=tmp_path / "data",
        log_path=tmp_path / "server.log",
        env={"ATOPOS_RATE_LIMIT": "2"},
    ).start()
    try:
        with httpx.Client(timeout=30) as client:
            responses = [
                client.post(f"{server.url}/api/v1/secrets/{UNKNOWN_ID}/challenge") for _ in range(4)
            ]
    finally:
        server.stop()
    limited = [r for r in responses if r.status_code == 429]
    assert limited
    for response in limited:
        assert int(response.headers["retry-after"]) > 0
        _audit(response, "429")


def test_an_unhandled_error_is_a_bare_500_with_the_headers() -> None:
    async def failing(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("secret detail " + os.urandom(4).hex())

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=EdgeMiddleware(failing))
        async with httpx.AsyncClient(transport=transport, base_url="http://audit") as client:
            return await client.get("/anything")

    # A thread of its own: the browser suite may hold an event loop on the main thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        response = pool.submit(asyncio.run, call()).result(timeout=30)
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal",
        "message": "The server failed to handle this request.",
    }
    assert "secret detail" not in response.text
    _audit(response, "500")


def test_the_pinned_policy_is_the_one_the_server_sends() -> None:
    assert CONTENT_SECURITY_POLICY == EXPECTED_CSP
