"""The one place an `httpx.Client` is built, so TLS pinning, proxies (Tor) and timeouts
are decided here and nowhere else."""

from __future__ import annotations

import ssl

import httpx

from atopos import __version__

__all__ = ["DEFAULT_TIMEOUT", "Verify", "build_http_client"]

Verify = ssl.SSLContext | str | bool
# Connecting should be quick; a read may wait while the server stores 100 MiB.
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


def build_http_client(
    server: str,
    *,
    transport: httpx.BaseTransport | None = None,
    verify: Verify = True,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
) -> httpx.Client:
    """A client whose relative URLs resolve under `server` (which may carry a path prefix).

    Redirects are not followed: a redirect would carry a ticket or a manage token to
    wherever the server points, and an Atopos server has no reason to send one.
    """
    return httpx.Client(
        base_url=server,
        transport=transport,
        verify=verify,
        timeout=timeout,
        follow_redirects=False,
        headers={"User-Agent": f"atopos/{__version__}"},
    )
