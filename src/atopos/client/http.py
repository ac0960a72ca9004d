"""The one place an `httpx.Client` is built, so TLS pinning, proxies (Tor) and timeouts
are decided here and nowhere else.

TLS settings (a CA file, SPKI pins) come from the arguments of `build_http_client` or, when
they are not given, from the `TlsPolicy` in force: the CLI puts its global `--ca-file` and
`--pin-spki` in force for the whole command (`use_tls_policy`), so every client built
while the command runs, whatever server a link names, checks them.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from atopos import __version__
from atopos.client.pinning import parse_pins, pin_context
from atopos.errors import InvalidInput, NetworkError

__all__ = [
    "DEFAULT_TIMEOUT",
    "TlsPolicy",
    "Verify",
    "build_http_client",
    "current_tls_policy",
    "ssl_context_for",
    "use_tls_policy",
]

Verify = ssl.SSLContext | str | bool
# Connecting should be quick; a read may wait while the server stores 100 MiB.
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


@dataclasses.dataclass(frozen=True, slots=True)
class TlsPolicy:
    """How HTTPS servers are checked: `ca_file` replaces the default trust store; with
    `pins` (SHA-256 digests of SubjectPublicKeyInfo) a server must also hold a pinned key,
    and only https:// servers are contacted at all."""

    ca_file: Path | None = None
    pins: tuple[bytes, ...] = ()


_policy: contextvars.ContextVar[TlsPolicy | None] = contextvars.ContextVar(
    "atopos_tls_policy", default=None
)


def current_tls_policy() -> TlsPolicy:
    return _policy.get() or TlsPolicy()


@contextlib.contextmanager
def use_tls_policy(policy: TlsPolicy) -> Iterator[TlsPolicy]:
    """Put `policy` in force for clients built inside the block."""
    token = _policy.set(policy)
    try:
        yield policy
    finally:
        _policy.reset(token)


def ssl_context_for(policy: TlsPolicy, verify: Verify = True) -> ssl.SSLContext:
    """The SSL context that carries out `policy`: CA verification as `verify` says (True:
    `policy.ca_file`, else httpx's default store), plus the pin check when there are pins."""
    if isinstance(verify, ssl.SSLContext):
        context = verify
    elif verify is True and policy.ca_file is not None:
        context = _context_with_ca_file(policy.ca_file)
    elif isinstance(verify, str):
        context = _context_with_ca_file(Path(verify))
    else:
        context = httpx.create_ssl_context(verify=verify)
    if policy.pins:
        pin_context(context, policy.pins)
    return context


def _context_with_ca_file(path: Path) -> ssl.SSLContext:
    try:
        if path.is_dir():
            return ssl.create_default_context(capath=str(path))
        return ssl.create_default_context(cafile=str(path))
    except (OSError, ValueError):
        raise InvalidInput(f"The CA file {path} holds no certificate that can be used.") from None


def build_http_client(
    server: str,
    *,
    transport: httpx.BaseTransport | None = None,
    verify: Verify = True,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    pin_spki: str | tuple[bytes, ...] | None = None,
    ca_file: Path | None = None,
) -> httpx.Client:
    """A client whose relative URLs resolve under `server` (which may carry a path prefix).

    `pin_spki` (pins as `client/pinning.py` parses them, or their digests) and `ca_file`
    default to the `TlsPolicy` in force. With pins the server must be https:// and its key
    is checked during the TLS handshake, before any request byte is sent
    (`client/pinning.py`); a mismatch raises `PinMismatch` (a `NetworkError`).

    Redirects are not followed: a redirect would carry a ticket or a manage token to
    wherever the server points, and an Atopos server has no reason to send one.
    """
    if isinstance(pin_spki, str):
        pin_spki = parse_pins(pin_spki)
    ambient = current_tls_policy()
    policy = TlsPolicy(
        ca_file=ca_file if ca_file is not None else ambient.ca_file,
        pins=pin_spki if pin_spki is not None else ambient.pins,
    )
    event_hooks: dict[str, list[Callable[..., object]]] = {}
    if policy.pins:
        if transport is not None:
            # A transport of the caller's would not use our SSL context: the pin would be
            # silently skipped.
            raise ValueError("a pinned client cannot use a custom transport")
        if httpx.URL(server).scheme != "https":
            raise NetworkError(
                f"A pinned key can only be checked over https; refusing to connect to {server}."
            )
        event_hooks["request"] = [_https_only]
    if policy.ca_file is not None or policy.pins:
        verify = ssl_context_for(policy, verify)
    return httpx.Client(
        base_url=server,
        transport=transport,
        verify=verify,
        timeout=timeout,
        follow_redirects=False,
        headers={"User-Agent": f"atopos/{__version__}"},
        event_hooks=event_hooks,
    )


def _https_only(request: httpx.Request) -> None:
    # Relative URLs stay on the (https) base URL; this refuses an absolute http:// one.
    if request.url.scheme != "https":
        raise NetworkError("A pinned key can only be checked over https; refusing to send.")
