"""The browser pages (`/`, `/s/{id}`, `/m/{id}`, `/device`, for secret requests `/ask/{id}`
and `/q/{id}`, and for rooms `/rooms` and `/r/{room_id}`) and their static assets (`/static/...`).

Pages are static files from the `atopos.web` package: all cryptography runs in the browser,
so serving a page looks nothing up. A GET of a share link (a link preview, a scanner) can
therefore consume nothing and does not even learn whether the secret exists.

Assets are read once, when the routes are built, into a table keyed by their path below
`atopos/web/`. A request either names a key of that table or gets a 404: no part of a
request path ever reaches the file system, so there is nothing to traverse.

A page address with a trailing slash (`/s/{id}/`, as some chat apps write links) redirects
to the page with a relative `Location` (`../{id}`): the browser resolves it against the
address it used, so the redirect never changes the scheme or the host. Starlette's own
slash redirect builds an absolute URL from the request, which behind a TLS proxy is
`http://`; the application turns that off.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import PurePosixPath
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

__all__ = ["ASSET_MEDIA_TYPES", "PAGES", "load_assets", "page_routes"]

_PACKAGE = "atopos.web"
# Only these folders of the package are served; the pages, the vendored packages'
# README and licence files, and Python files never are.
_ASSET_FOLDERS = ("css", "icons", "js", "vendor")
ASSET_MEDIA_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".webmanifest": "application/manifest+json",
}
# Route template -> file under atopos/web/pages/.
PAGES = {
    "/": "create.html",
    "/s/{id}": "reveal.html",
    "/m/{id}": "manage.html",
    "/device": "device.html",
    # Secret requests (docs/protocol/requests.md): /ask/new asks, /ask/{id} waits (the
    # pickup link), /q/{id} fills.
    "/ask/{id}": "request.html",
    "/q/{id}": "request-fill.html",
    "/rooms": "room-create.html",
    "/r/{id}": "room.html",
}
_HTML = "text/html; charset=utf-8"
# Share links are not for search engines; robots that honour this also skip the preview.
_PAGE_HEADERS = {"x-robots-tag": "noindex, nofollow"}

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str


def _files(folder: Traversable, prefix: str) -> Iterator[tuple[str, Traversable]]:
    for entry in folder.iterdir():
        path = f"{prefix}/{entry.name}"
        if entry.is_dir():
            yield from _files(entry, path)
        elif entry.is_file():
            yield path, entry


def load_assets() -> dict[str, Asset]:
    """Every servable asset, keyed by its path below `atopos/web/` (`js/envelope.js`)."""
    root = resources.files(_PACKAGE)
    assets: dict[str, Asset] = {}
    for folder in _ASSET_FOLDERS:
        for path, entry in _files(root / folder, folder):
            media_type = ASSET_MEDIA_TYPES.get(PurePosixPath(path).suffix)
            if media_type is not None:
                assets[path] = Asset(entry.read_bytes(), media_type)
    return assets


def _page(body: bytes) -> Endpoint:
    async def endpoint(_: Request) -> Response:
        return Response(body, media_type=_HTML, headers=_PAGE_HEADERS)

    return endpoint


async def _without_trailing_slash(request: Request) -> Response:
    """`/device/` -> `../device`, `/s/{id}/` -> `../{id}`, keeping the query."""
    last = request.scope["path"].rstrip("/").rsplit("/", 1)[-1]
    location = "../" + quote(last, safe="")
    if request.url.query:
        location += "?" + request.url.query
    # A content type on the empty body too: every answer names one (nosniff).
    return Response(
        status_code=307, headers={"location": location}, media_type="text/plain; charset=utf-8"
    )


def page_routes() -> list[BaseRoute]:
    """Routes for the pages and `/static/{path}`; mount them in the application."""
    pages = resources.files(_PACKAGE) / "pages"
    assets = load_assets()

    async def static(request: Request) -> Response:
        asset = assets.get(request.path_params["path"])
        if asset is None:
            raise HTTPException(404, "There is no such file.")
        return Response(asset.body, media_type=asset.media_type)

    routes: list[BaseRoute] = [
        Route(template, _page((pages / name).read_bytes()), methods=["GET"])
        for template, name in PAGES.items()
    ]
    routes += [
        Route(f"{template}/", _without_trailing_slash, methods=["GET"])
        for template in PAGES
        if template != "/"
    ]
    routes.append(Route("/static/{path:path}", static, methods=["GET"]))
    return routes
