"""HTML error pages for browsers: an unknown address or a method error opened in a browser tab
gets a small page instead of raw JSON.

Only requests that ask for HTML (`Accept: text/html`, which every browser sends when it
navigates) outside `/api/` get the page; API clients, and every `/api/` route, keep the JSON
error of `server/errors.py`. The page is static text of ours: nothing from the request is
written into it, and its asset links are relative (`../` once per folder of the request
path), so it keeps working behind a proxy that mounts Atopos under a path; past 16 folders
they start at `/`, so that a page's size does not grow with its path. The security headers
and the CSP come from the edge middleware, as for every response.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["ErrorHandler", "html_for_browsers"]

ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]

_TEMPLATE = (resources.files("atopos.web") / "pages" / "error.html").read_text("utf-8")
_HEADERS = {"x-robots-tag": "noindex, nofollow"}
_MAX_RELATIVE_DEPTH = 16
# Status -> (title, sentence). Anything else gets the generic pair.
_WORDING = {
    404: (
        "There is nothing here",
        "This address does not lead to a page of this server.",
    ),
    405: (
        "This address does not take that request",
        "The page exists, but not for the kind of request your browser sent.",
    ),
}
_GENERIC = ("The request could not be served", "The server could not answer this request.")


def html_for_browsers(handler: ErrorHandler) -> ErrorHandler:
    """Wrap the JSON handler of `HTTPException`: browsers navigating get the HTML page."""

    async def handle(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException) and _wants_html(request):
            return _error_page(exc.status_code, request.scope["path"], exc.headers)
        return await handler(request, exc)

    return handle


def _wants_html(request: Request) -> bool:
    path: str = request.scope["path"]
    if path == "/api" or path.startswith("/api/"):
        return False
    accepted = request.headers.get("accept", "")
    return any(part.split(";", 1)[0].strip().lower() == "text/html" for part in accepted.split(","))


def _error_page(status: int, path: str, headers: Mapping[str, str] | None) -> Response:
    title, message = _WORDING.get(status, _GENERIC)
    # From /a/b/c the server root is ../../ (the browser resolves against the last folder).
    # Deeper than any page of ours under any mount, the root is "/": the page's size must
    # not grow with the path (its root is written five times).
    depth = path.count("/") - 1
    root = "../" * max(depth, 0) if depth <= _MAX_RELATIVE_DEPTH else "/"
    body = (
        _TEMPLATE.replace("{root}", root)
        .replace("{title}", html.escape(title))
        .replace("{message}", html.escape(message))
    )
    return Response(
        body,
        status_code=status,
        media_type="text/html; charset=utf-8",
        headers={**_HEADERS, **(headers or {})},
    )
