"""Refuse requests another web site makes a visitor's browser send.

A page on another origin can make a browser POST to our API without reading the answer
(`fetch(..., {mode: "no-cors"})`, a form): each such request would spend the visitor's rate
budget and raise their proof-of-work price, and a WebSocket opened from another page would
act with the visitor's address. Browsers say where a request comes from: `Sec-Fetch-Site`
(every current browser) and `Origin` (on every cross-origin POST and every WebSocket
handshake). A request is cross-site when `Sec-Fetch-Site` names anything but our own origin
or the user's own action, or, without it, when `Origin` names another host than the one the
request was sent to. Clients that are not browsers send neither and are not affected.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import Scope

__all__ = ["is_cross_site"]

_OWN_SITE = frozenset({"same-origin", "none"})


def is_cross_site(scope: Scope) -> bool:
    headers = _headers(scope)
    fetch_site = headers.get(b"sec-fetch-site")
    if fetch_site is not None:
        return fetch_site.decode("latin-1").strip().lower() not in _OWN_SITE
    origin = headers.get(b"origin")
    if origin is None:
        return False
    host = headers.get(b"host", b"").decode("latin-1").strip().lower()
    text = origin.decode("latin-1").strip().lower()
    # "null" (a sandboxed frame, a file:// page) is never our own origin.
    if text == "null":
        return True
    try:
        return urlsplit(text).netloc != host
    except ValueError:
        # No URL at all ("http://[" has an unclosed IPv6 bracket): no origin of ours.
        return True


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """The first value of each header (names are lower-case in ASGI)."""
    found: dict[bytes, bytes] = {}
    for name, value in scope.get("headers", ()):
        found.setdefault(name, value)
    return found
