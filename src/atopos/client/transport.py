"""`Transport`: how this client reaches one Atopos server, stated once and explicitly.

A Transport holds the server URL, the TLS policy (a CA file, SPKI pins) and an optional proxy
URL (an HTTP proxy, or `socks5h://` for Tor: `--tor`), and builds every connection to that
server from them: the sync and the async httpx client, and WebSocket connections (rooms).

With a proxy, every connection goes through it and nowhere else: the proxy is mounted for
every URL, the environment's proxy settings (NO_PROXY included) are not consulted, and a
proxy that does not answer is one sentence, never a direct attempt. `socks5h://` names the
server to the proxy, so Tor resolves it (a .onion cannot be resolved anywhere else).

Nothing is ambient: the CLI builds one Transport from its global options (`cli/context.py`)
and passes it down; `with_server` gives the same policy for the server a link names.

Pins are checked during the TLS handshake, before any request byte is sent, for HTTP and
WebSocket alike (`client/pinning.py`); with pins only https/wss servers are contacted.
Redirects are never followed: a redirect would carry a ticket or a manage token to wherever
the server points, and an Atopos server has no reason to send one.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidURI, ProxyError

from atopos import __version__
from atopos.client.links import parse_server_url
from atopos.client.pinning import PinMismatch, parse_pins, pin_context
from atopos.client.socks_deadline import (
    ProxyRefused,
    async_socks_transport,
    open_socks_socket,
    socks_transport,
    unreadable_socks_answers,
)
from atopos.clock import Clock, SystemClock
from atopos.errors import InvalidInput, NetworkError

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_WEBSOCKET_MESSAGE",
    "PROXIED_TIMEOUT",
    "TlsPolicy",
    "Transport",
    "Verify",
    "build_http_client",
]

Verify = ssl.SSLContext | str | bool
# Connecting should be quick; a read may wait while the server stores 100 MiB.
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
# Through a SOCKS proxy (Tor) connecting includes building a circuit, and to an onion service
# a rendezvous: seconds usually, a minute at times. tor itself gives up after 2 minutes
# (its SocksTimeout), with an error we can name; ours must not cut in before.
PROXIED_TIMEOUT = httpx.Timeout(60.0, connect=120.0)
# A room message is small; a relay must not make us buffer more than this in one frame.
MAX_WEBSOCKET_MESSAGE = 1024 * 1024
_PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
_USER_AGENT = f"atopos/{__version__}"


@dataclasses.dataclass(frozen=True, slots=True)
class TlsPolicy:
    """How HTTPS servers are checked: `ca_file` replaces the default trust store; with
    `pins` (SHA-256 digests of SubjectPublicKeyInfo) a server must also hold a pinned key,
    and only https:// servers are contacted at all."""

    ca_file: Path | None = None
    pins: tuple[bytes, ...] = ()

    def ssl_context(self, verify: Verify = True) -> ssl.SSLContext:
        """The SSL context that carries out this policy: CA verification as `verify` says
        (True: `ca_file`, else the default store), plus the pin check when there are pins."""
        if isinstance(verify, ssl.SSLContext):
            context = verify
        elif verify is True and self.ca_file is not None:
            context = _context_with_ca_file(self.ca_file)
        elif isinstance(verify, str):
            context = _context_with_ca_file(Path(verify))
        else:
            context = httpx.create_ssl_context(verify=verify)
        if self.pins:
            pin_context(context, self.pins)
        return context

    @property
    def is_default(self) -> bool:
        return self.ca_file is None and not self.pins


@dataclasses.dataclass(frozen=True, slots=True)
class Transport:
    """One server (`server`, normalized), the TLS policy for it, and an optional proxy."""

    server: str
    tls: TlsPolicy = TlsPolicy()
    proxy: str | None = None
    # The default becomes PROXIED_TIMEOUT through a SOCKS proxy.
    timeout: httpx.Timeout = dataclasses.field(default_factory=lambda: DEFAULT_TIMEOUT)
    # Carries the sync client's requests instead of connecting to `server` (`--mixnet`: the
    # mixnet's exit service asks the server); None connects directly or through `proxy`.
    http_transport: httpx.BaseTransport | None = None
    # The same for the asyncio client (`room create`, `AsyncSecretsApi`); `--mixnet` sets both
    # to one object, so no request of either kind connects to `server` directly.
    async_http_transport: httpx.AsyncBaseTransport | None = None
    # Opens `websocket(path)` instead of connecting to `server` (`--mixnet`: a WebSocket the
    # exit service holds); its connections have send / recv / close like websockets' own.
    websocket_opener: Callable[[str], AbstractAsyncContextManager[Any]] | None = None
    # The largest envelope `http_transport`'s answers can carry (`--mixnet`: its reply
    # blocks); a reveal sends it as `max_bytes`, so a larger secret is refused before its
    # view is spent. None: unbounded.
    max_answer_bytes: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "server", parse_server_url(self.server))
        if self.proxy is None:
            return
        scheme = _scheme(self.proxy)
        if scheme not in _PROXY_SCHEMES:
            raise InvalidInput("A proxy URL must start with http://, https:// or socks5h://.")
        if scheme.startswith("socks") and self.timeout is DEFAULT_TIMEOUT:
            object.__setattr__(self, "timeout", PROXIED_TIMEOUT)

    def with_server(self, server: str) -> Transport:
        """The same policy and proxy for another server (the one a link names)."""
        return dataclasses.replace(self, server=server)

    def http_client(self) -> httpx.Client:
        """A sync client for this server (see `build_http_client`)."""
        return build_http_client(
            self.server,
            transport=self.http_transport,
            tls=self.tls,
            proxy=self.proxy,
            timeout=self.timeout,
        )

    def check_proxy(self) -> None:
        """When there is a proxy, make sure something listens there (NetworkError, one
        sentence, if not): callers use it to say "Tor is not running" rather than "the
        server is unreachable". Only the proxy is contacted, never the server."""
        if self.proxy is not None and not _is_listening(self.proxy):
            raise _proxy_unreachable(self.proxy)

    def async_http_client(
        self, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> httpx.AsyncClient:
        """The asyncio twin of `http_client`, with the same checks; `transport` (an
        in-memory one, for tests; default `async_http_transport`) cannot be combined with
        pins."""
        options = _client_options(
            self.server,
            custom=transport if transport is not None else self.async_http_transport,
            verify=True,
            timeout=self.timeout,
            tls=self.tls,
            proxy=self.proxy,
            https_only=_https_only_async,
            is_async=True,
        )
        return httpx.AsyncClient(**options)

    @asynccontextmanager
    async def websocket(self, path: str) -> AsyncIterator[ClientConnection]:
        """A WebSocket connection to `path` under the server (wss:// for https://), open
        while the block runs. With pins the key is checked right after the TLS handshake,
        before the upgrade request is written; a mismatch raises PinMismatch."""
        if self.websocket_opener is not None:
            async with self.websocket_opener(path) as carried:
                yield carried
            return
        url = httpx.URL(self.server)
        scheme = {"https": "wss", "http": "ws"}[url.scheme]
        if self.tls.pins and scheme != "wss":
            raise NetworkError(
                f"A pinned key can only be checked over https; refusing to connect to "
                f"{self.server}."
            )
        target = f"{scheme}://{url.netloc.decode('ascii')}{url.path.rstrip('/')}{path}"
        options: dict[str, Any] = {}
        if scheme == "wss":
            options["ssl"] = self.tls.ssl_context()
        proxy = _proxy(self.proxy, socks_module="python_socks")
        if proxy is not None:
            self.check_proxy()
        opening = _Budget(self.timeout.connect)
        sock: socket.socket | None = None
        try:
            if proxy is not None and _scheme(proxy).startswith("socks"):
                # Dialled here, not by websockets, whose SOCKS library caps it at 60 s.
                default_port = {"ws": 80, "wss": 443}[scheme]
                sock = await open_socks_socket(
                    proxy, url.host, url.port or default_port, opening.left()
                )
                options["sock"] = sock
            async with connect(
                target,
                # None, not the default True: no proxy from the environment behind our back.
                proxy=None if sock is not None else proxy,
                open_timeout=opening.left(),
                max_size=MAX_WEBSOCKET_MESSAGE,
                user_agent_header=_USER_AGENT,
                compression=None,  # compressed frames inflate before max_size applies
                **options,
            ) as connection:
                yield connection
        except PinMismatch:
            raise
        except ssl.SSLCertVerificationError as exc:
            raise NetworkError(
                f"The TLS certificate of {self.server} could not be verified."
            ) from exc
        except TimeoutError as exc:
            raise NetworkError(f"The server at {self.server} did not answer in time.") from exc
        except (ProxyError, ProxyRefused) as exc:
            assert self.proxy is not None
            raise _through_proxy_failed(self.proxy, self.server) from exc
        except (OSError, InvalidHandshake, InvalidURI) as exc:
            if self.proxy is not None and not _is_listening(self.proxy):
                raise _proxy_unreachable(self.proxy) from exc
            raise NetworkError(f"Could not connect to the server at {self.server}.") from exc
        finally:
            if sock is not None:
                sock.close()  # closed with the connection already, unless opening failed


@dataclasses.dataclass(slots=True)
class _Budget:
    """What is left of a timeout (None: no limit) across the steps of opening."""

    seconds: float | None
    clock: Clock = dataclasses.field(default_factory=SystemClock)
    started: float = 0.0

    def __post_init__(self) -> None:
        self.started = self.clock.monotonic()

    def left(self) -> float | None:
        if self.seconds is None:
            return None
        return max(self.seconds - (self.clock.monotonic() - self.started), 0.0)


def _context_with_ca_file(path: Path) -> ssl.SSLContext:
    try:
        if path.is_dir():
            return ssl.create_default_context(capath=str(path))
        return ssl.create_default_context(cafile=str(path))
    except (OSError, ValueError):
        raise InvalidInput(f"The CA file {path} holds no certificate that can be used.") from None


def _client_options(
    server: str,
    *,
    custom: object,
    verify: Verify,
    timeout: httpx.Timeout,
    tls: TlsPolicy,
    proxy: str | None,
    https_only: Callable[[httpx.Request], Any],
    is_async: bool = False,
) -> dict[str, Any]:
    """The options the sync and the async client share; with pins, `https_only` is their
    request hook."""
    hooks: dict[str, list[Callable[..., Any]]] = {}
    if tls.pins:
        if custom is not None:
            # A transport of the caller's would not use our SSL context: the pin would be
            # silently skipped.
            raise ValueError("a pinned client cannot use a custom transport")
        if httpx.URL(server).scheme != "https":
            raise NetworkError(
                f"A pinned key can only be checked over https; refusing to connect to {server}."
            )
        hooks["request"] = [https_only]
    checked_verify = verify if tls.is_default else tls.ssl_context(verify)
    options: dict[str, Any] = {
        "base_url": server,
        "transport": custom,
        "verify": checked_verify,
        "timeout": timeout,
        "follow_redirects": False,
        "headers": {"User-Agent": _USER_AGENT},
        "event_hooks": hooks,
    }
    if proxy is not None and custom is None:
        # Mounted for every URL, with the environment's proxy settings off: NO_PROXY
        # would otherwise name hosts reached directly, around the proxy.
        options["trust_env"] = False
        _proxy(proxy)  # a SOCKS proxy needs socksio: one sentence if it is missing
        socks = _scheme(proxy).startswith("socks")
        if is_async:
            inner_async = (
                async_socks_transport(proxy, checked_verify)
                if socks
                else httpx.AsyncHTTPTransport(verify=checked_verify, proxy=proxy)
            )
            options["mounts"] = {"all://": _AsyncProxiedTransport(inner_async, proxy, server)}
        else:
            inner = (
                socks_transport(proxy, checked_verify)
                if socks
                else httpx.HTTPTransport(verify=checked_verify, proxy=proxy)
            )
            options["mounts"] = {"all://": _ProxiedTransport(inner, proxy, server)}
    else:
        options["proxy"] = _proxy(proxy)
    return options


class _ProxiedTransport(httpx.BaseTransport):
    """httpx's transport through the proxy, whose failures say where things broke."""

    def __init__(self, inner: httpx.HTTPTransport, proxy: str, server: str) -> None:
        self._inner, self._proxy, self._server = inner, proxy, server
        self._unreadable = unreadable_socks_answers()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return self._inner.handle_request(request)
        except (httpx.ConnectError, httpx.ProxyError) as exc:
            raise _proxy_failure(exc, self._proxy, self._server) from exc
        except self._unreadable as exc:
            raise _through_proxy_failed(self._proxy, self._server) from exc

    def close(self) -> None:
        self._inner.close()


class _AsyncProxiedTransport(httpx.AsyncBaseTransport):
    """The asyncio twin of `_ProxiedTransport`."""

    def __init__(self, inner: httpx.AsyncHTTPTransport, proxy: str, server: str) -> None:
        self._inner, self._proxy, self._server = inner, proxy, server
        self._unreadable = unreadable_socks_answers()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._inner.handle_async_request(request)
        except (httpx.ConnectError, httpx.ProxyError) as exc:
            raise _proxy_failure(exc, self._proxy, self._server) from exc
        except self._unreadable as exc:
            raise _through_proxy_failed(self._proxy, self._server) from exc

    async def aclose(self) -> None:
        await self._inner.aclose()


def _proxy_failure(
    error: httpx.ConnectError | httpx.ProxyError, proxy: str, server: str
) -> Exception:
    """The proxy does not answer; or it answered that it cannot reach the server; or the
    failure came later (TLS with the server: left to the caller's usual words)."""
    if isinstance(error, httpx.ProxyError):
        return _through_proxy_failed(proxy, server)
    if not _is_listening(proxy):
        return _proxy_unreachable(proxy)
    return error


def _proxy_unreachable(proxy: str) -> NetworkError:
    return NetworkError(
        f"Nothing answers at the proxy {_proxy_address(proxy)} (is Tor running? ATOPOS_TOR "
        "names another); nothing was sent."
    )


def _through_proxy_failed(proxy: str, server: str) -> NetworkError:
    return NetworkError(
        f"The proxy at {_proxy_address(proxy)} could not reach the server at {server}."
    )


def _proxy_address(proxy: str) -> str:
    """host:port of a proxy URL, without any user name or password in it."""
    url = httpx.URL(proxy)
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{host}:{url.port}" if url.port is not None else host


def _is_listening(proxy: str) -> bool:
    """Whether a TCP connection to the proxy opens (the proxy itself, never the server)."""
    url = httpx.URL(proxy)
    port = url.port or {"http": 80, "https": 443}.get(url.scheme, 1080)
    try:
        with socket.create_connection((url.host, port), timeout=5):
            return True
    except OSError:
        return False


def build_http_client(
    server: str,
    *,
    transport: httpx.BaseTransport | None = None,
    verify: Verify = True,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    tls: TlsPolicy = TlsPolicy(),
    pin_spki: str | tuple[bytes, ...] | None = None,
    ca_file: Path | None = None,
    proxy: str | None = None,
) -> httpx.Client:
    """A sync client whose relative URLs resolve under `server` (which may carry a path
    prefix), checking servers as `tls` says; `pin_spki` and `ca_file` override its fields.
    `transport` (an in-memory one, for tests) cannot be combined with pins."""
    if isinstance(pin_spki, str):
        pin_spki = parse_pins(pin_spki)
    tls = TlsPolicy(
        ca_file=ca_file if ca_file is not None else tls.ca_file,
        pins=pin_spki if pin_spki is not None else tls.pins,
    )
    return httpx.Client(
        **_client_options(
            server,
            custom=transport,
            verify=verify,
            timeout=timeout,
            tls=tls,
            proxy=proxy,
            https_only=_https_only,
        )
    )


def _proxy(proxy: str | None, *, socks_module: str = "socksio") -> str | None:
    """`proxy`, once the module that speaks SOCKS for the caller (httpx: socksio,
    websockets: python_socks) is known to be there: the Tor issue adds them to the lock."""
    if (
        proxy is not None
        and _scheme(proxy).startswith("socks")
        and importlib.util.find_spec(socks_module) is None
    ):
        raise InvalidInput(
            f"A SOCKS proxy needs the {socks_module} package, which this install does not have."
        )
    return proxy


def _scheme(url: str) -> str:
    try:
        return httpx.URL(url).scheme
    except httpx.InvalidURL:
        return ""


def _https_only(request: httpx.Request) -> None:
    # Relative URLs stay on the (https) base URL; this refuses an absolute http:// one.
    if request.url.scheme != "https":
        raise NetworkError("A pinned key can only be checked over https; refusing to send.")


async def _https_only_async(request: httpx.Request) -> None:
    _https_only(request)
