"""A SOCKS proxy's handshake, bounded by the connect timeout.

httpcore opens the TCP connection to a SOCKS proxy under the connect timeout, then reads the
proxy's replies with no timeout at all: a proxy that accepts and stays silent (a stuck tor,
a port that is something else) would hold a request forever. Here each connection's stream
carries a deadline, the connect timeout counted from the moment the TCP connection opened,
and a read or write that httpcore leaves unbounded gets what is left of it. Reads and writes
with a timeout of their own (every HTTP one after the handshake: httpx always sets them)
keep theirs.

websockets has the mirror problem: python_socks bounds the handshake by its own 60 s,
shorter than tor's 120 s for a rendezvous. `open_socks_socket` dials with our timeout.
"""

from __future__ import annotations

import math
import socket
import ssl
import typing

import httpcore
import httpx

from atopos.clock import Clock, SystemClock

__all__ = [
    "ProxyRefused",
    "async_socks_transport",
    "open_socks_socket",
    "socks_transport",
    "unreadable_socks_answers",
]


class ProxyRefused(Exception):
    """The SOCKS proxy answered that it could not reach the server."""


def socks_transport(proxy: str, verify: ssl.SSLContext | str | bool) -> httpx.HTTPTransport:
    """httpx's transport through the SOCKS `proxy`, its handshake under the connect timeout."""
    transport = httpx.HTTPTransport(verify=verify, proxy=proxy)
    # httpx builds this pool without a way to choose its network backend; the same pool,
    # from the same public arguments, with ours.
    transport._pool = httpcore.SOCKSProxy(
        network_backend=_DeadlineBackend(httpcore.SyncBackend()), **_pool_arguments(proxy, verify)
    )
    return transport


def async_socks_transport(
    proxy: str, verify: ssl.SSLContext | str | bool
) -> httpx.AsyncHTTPTransport:
    """The asyncio twin of `socks_transport`."""
    transport = httpx.AsyncHTTPTransport(verify=verify, proxy=proxy)
    transport._pool = httpcore.AsyncSOCKSProxy(
        network_backend=_AsyncDeadlineBackend(httpcore.AnyIOBackend()),
        **_pool_arguments(proxy, verify),
    )
    return transport


async def open_socks_socket(
    proxy: str, host: str, port: int, within: float | None
) -> socket.socket:
    """A connected socket to host:port through the SOCKS5 `proxy` (socks5h: the proxy
    resolves `host`), in at most `within` seconds. Raises ProxyRefused, an OSError (no proxy
    there) or a TimeoutError. (python_socks is imported here, so that an install without it
    fails only when it is needed, in the caller's one sentence.)"""
    from python_socks import ProxyError, ProxyType
    from python_socks.async_.asyncio import Proxy as SocksDialer

    url = httpx.URL(proxy)
    dialer = SocksDialer(
        ProxyType.SOCKS5,
        url.host,
        url.port or 1080,
        url.username or None,
        url.password or None,
        rdns=url.scheme == "socks5h",
    )
    try:
        return await dialer.connect(host, port, timeout=within)
    except ProxyError as exc:
        raise ProxyRefused(str(exc)) from exc


def unreadable_socks_answers() -> tuple[type[Exception], ...]:
    """What httpx lets through, unwrapped, when a SOCKS proxy's answer is not one its parser
    (socksio) knows: any reply code outside RFC 1928's, such as tor's reasons why an onion
    service cannot be reached (0xF0-0xF7, from a SocksPort with the ExtendedErrors flag).
    Empty without socksio (no SOCKS through httpx then)."""
    try:
        from socksio.exceptions import SOCKSError
    except ImportError:
        return ()
    return (SOCKSError,)


def _pool_arguments(proxy: str, verify: ssl.SSLContext | str | bool) -> dict[str, typing.Any]:
    """What httpx's own transport gives its SOCKS pool (httpx/_transports/default.py)."""
    parsed = httpx.Proxy(proxy)
    limits = httpx.Limits()
    return {
        "proxy_url": httpcore.URL(
            scheme=parsed.url.raw_scheme,
            host=parsed.url.raw_host,
            port=parsed.url.port,
            target=parsed.url.raw_path,
        ),
        "proxy_auth": parsed.raw_auth,
        "ssl_context": httpx.create_ssl_context(verify=verify),
        "max_connections": limits.max_connections,
        "max_keepalive_connections": limits.max_keepalive_connections,
        "keepalive_expiry": limits.keepalive_expiry,
    }


_CLOCK: Clock = SystemClock()


def _deadline(timeout: float | None) -> float:
    return math.inf if timeout is None else _CLOCK.monotonic() + timeout


def _left(deadline: float, timeout: float | None, expired: type[Exception]) -> float | None:
    """`timeout` if the caller chose one, else what is left before the deadline."""
    if timeout is not None or deadline == math.inf:
        return timeout
    left = deadline - _CLOCK.monotonic()
    if left <= 0:
        raise expired("the proxy did not answer within the connect timeout")
    return left


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner, self._deadline = inner, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(self._deadline, timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(self._deadline, timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(
            ssl_context, server_hostname, _left(self._deadline, timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        deadline = _deadline(timeout)
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _DeadlineStream(stream, deadline)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        return self._inner.connect_unix_socket(path, timeout, socket_options)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _AsyncDeadlineStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream, deadline: float) -> None:
        self._inner, self._deadline = inner, deadline

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(
            max_bytes, _left(self._deadline, timeout, httpcore.ReadTimeout)
        )

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._inner.write(buffer, _left(self._deadline, timeout, httpcore.WriteTimeout))

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's names)
    ) -> httpcore.AsyncNetworkStream:
        inner = await self._inner.start_tls(
            ssl_context, server_hostname, _left(self._deadline, timeout, httpcore.ConnectTimeout)
        )
        return _AsyncDeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _AsyncDeadlineBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        deadline = _deadline(timeout)
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _AsyncDeadlineStream(stream, deadline)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
