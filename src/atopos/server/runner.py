"""Run the server on uvicorn (`atopos serve`): the open listener, and with `--onion` a
second one on loopback that only the onion service's tor reaches (it reads tor's PROXY
line: server/connection_guard.py), in the same process and the same app."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import resource
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import uvicorn
from starlette.types import ASGIApp

from atopos import __version__
from atopos.clock import SystemClock
from atopos.crypto.sizes import NODE_KEY_BYTES
from atopos.errors import InvalidInput
from atopos.protocol.room_wire import MAX_FRAME_CHARS
from atopos.randomness import system_random_bytes
from atopos.server.app import create_app
from atopos.server.config import ServerConfig
from atopos.server.connection_guard import ConnectionLimits, guarded_http_protocol
from atopos.server.keyfile import NodeKeys, load_key_file
from atopos.server.logs import configure_logging
from atopos.server.shared_counters import SharedCounterTable
from atopos.server.websocket_protocol import QuietWebSocketProtocol
from atopos.server.workers import WorkerSupervisor
from atopos.server.writer_process import run_writer_process, writer_socket
from atopos.storage.factory import open_store
from atopos.storage.urls import sqlite_path

if TYPE_CHECKING:
    from atopos.server.onion_service import OnionOptions, PublishedOnion

__all__ = [
    "NodeServer",
    "listening_socket",
    "listening_sockets_per_worker",
    "serve",
    "start_up_lines",
    "storage_scheme",
    "uvicorn_config",
]


def serve(
    config: ServerConfig,
    *,
    log_format: str = "json",
    onion: OnionOptions | None = None,
    is_onion_only: bool = False,
    show_onion: Callable[[PublishedOnion], None] | None = None,
) -> None:
    """Run until interrupted; `log_format` is `human` (start-up lines for a person on a
    terminal, then short log lines) or `json`. With `onion`, also publish an onion service
    (`show_onion` tells its address); `is_onion_only` binds no open listener at all."""
    configure_logging(config.log_level, log_format)
    if config.workers > 1:
        _serve_workers(config, log_format=log_format, has_onion=onion is not None)
        return
    _raise_descriptor_limit()
    # Bound first: a busy port is one sentence (InvalidInput), not uvicorn's log and exit.
    listener = None if is_onion_only else listening_socket(config.host, config.port)
    onion_listener: socket.socket | None = None
    server: NodeServer | None = None
    try:
        if onion is not None:
            onion_listener = listening_socket("127.0.0.1", 0)
            # Listening at once: tor may connect before uvicorn accepts; the backlog holds it.
            onion_listener.listen(128)
        if config.storage_url is None:
            config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(config.data_dir, 0o700)
        # Built before anything is logged: a bad key file or storage URL stops the start
        # with one sentence.
        app = create_app(config)
        if log_format == "human":
            port = listener.getsockname()[1] if listener is not None else None
            for line in start_up_lines(config, port):
                print(line, file=sys.stderr, flush=True)
        else:
            logging.getLogger("atopos.server").info(
                "starting",
                extra={"storage": storage_scheme(config), "pow_bits": config.pow_bits},
            )
        limits = config.connection_limits()
        server = NodeServer(
            uvicorn_config(app, config.host, config.port, limits),
            onion_listener=onion_listener,
            onion_protocol=guarded_http_protocol(limits, reads_proxy_header=True),
        )
        sockets = [listener] if listener is not None else []
        if onion is None or onion_listener is None:
            server.run(sockets=sockets)
            return
        # Imported here: stem is a fifth of a second of every start-up, and only --onion uses it.
        from atopos.server.onion_service import publish_onion_service

        with publish_onion_service(
            onion,
            onion_listener.getsockname()[1],
            on_starting_tor=lambda: _tell(log_format, "  starting tor for the onion service..."),
        ) as published:
            _announce_onion(published, log_format, show_onion)
            server.run(sockets=sockets)
    finally:
        for sock in (listener, onion_listener):
            if sock is not None:
                sock.close()
        # Only now, the onion service removed: SIGTERM's default action ends the process.
        if server is not None:
            server.raise_captured_signals()


def _serve_workers(config: ServerConfig, *, log_format: str, has_onion: bool) -> None:
    """`config.workers` processes, each on its own listening socket of one port
    (server/workers.py)."""
    if has_onion:
        raise InvalidInput("--onion runs in a single process; set --workers 1 to use it.")
    _raise_descriptor_limit()
    listeners = listening_sockets_per_worker(config.host, config.port, config.workers)
    try:
        if config.storage_url is None:
            config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(config.data_dir, 0o700)
        clock = SystemClock()
        # Drawn once, before the fork: a challenge one worker issued passes at every other.
        keys = (
            load_key_file(config.key_file)
            if config.key_file is not None
            else NodeKeys(system_random_bytes(NODE_KEY_BYTES))
        )
        # Made before the fork too: without a rate-limit Redis, every worker counts each
        # client in this one table in shared memory (server/shared_counters.py).
        counters = (
            SharedCounterTable(clock, system_random_bytes)
            if config.shares_counters_between_workers()
            else None
        )
        # A bad setting: one sentence, here.
        create_app(config, clock=clock, node_keys=keys, shared_counters=counters)
        _prepare_store(config, clock)
        if log_format == "human":
            for line in start_up_lines(config, listeners[0].getsockname()[1]):
                print(line, file=sys.stderr, flush=True)
        else:
            logging.getLogger("atopos.server").info(
                "starting",
                extra={
                    "storage": storage_scheme(config),
                    "pow_bits": config.pow_bits,
                    "workers": config.workers,
                },
            )
        if config.room_redis_url is None:
            logging.getLogger("atopos.server").warning(
                "rooms are refused: they need a single worker process or a room Redis"
            )
        for listener in listeners:
            listener.listen(2048)
        limits = config.connection_limits()
        with contextlib.ExitStack() as stack:
            # On SQLite, one writer process commits every worker's writes (server/workers.py).
            writer = None if config.has_redis_storage() else stack.enter_context(writer_socket())

            def work(index: int) -> None:
                # Worker `index` accepts from its own socket only; the supervisor keeps them
                # all open, so a restarted worker finds its backlog waiting.
                for other, listener in enumerate(listeners):
                    if other != index:
                        listener.close()
                store = None
                if writer is not None:
                    # Before this worker starts its threads: a Linux nice value is per thread,
                    # and a thread takes its creator's (the supervisor watch thread, already
                    # started, only waits on a pipe).
                    os.nice(config.worker_nice)
                    writer.listener.close()
                    store = open_store(
                        config.resolved_storage_url(),
                        is_shared_by_workers=True,
                        writer_lock_wait=config.writer_lock_wait,
                        writer_socket=writer.path,
                    )
                app = create_app(config, node_keys=keys, shared_counters=counters, store=store)
                NodeServer(uvicorn_config(app, config.host, config.port, limits)).run(
                    sockets=[listeners[index]]
                )

            def write(parent_gone: int) -> None:
                assert writer is not None
                for listener in listeners:
                    listener.close()
                database = sqlite_path(config.resolved_storage_url())
                run_writer_process(
                    writer.listener, database, config.writer_lock_wait, parent_gone, config.workers
                )

            status = WorkerSupervisor(
                config.workers, work, clock, write=None if writer is None else write
            ).run()
    finally:
        for listener in listeners:
            listener.close()
    if status:
        raise SystemExit(status)


def _prepare_store(config: ServerConfig, clock: SystemClock) -> None:
    """Open the store once before the workers do: an SQLite file is created or migrated by
    one process only, and its chunks of interrupted uploads are removed while no upload can
    be in progress (workers leave them alone: storage/sqlite.py). Nothing keeps running."""
    if config.has_redis_storage():
        return
    store = open_store(config.resolved_storage_url(), clock)

    async def open_and_close() -> None:
        await store.start(int(clock.now()))
        await store.aclose()

    asyncio.run(open_and_close())


def _tell(log_format: str, line: str) -> None:
    if log_format == "human":
        print(line, file=sys.stderr, flush=True)


def _announce_onion(
    published: PublishedOnion,
    log_format: str,
    show_onion: Callable[[PublishedOnion], None] | None,
) -> None:
    if show_onion is not None:
        show_onion(published)
    log = logging.getLogger("atopos.server")
    # (The address itself would be redacted from a log line: show_onion prints it.)
    log.info("onion service started", extra={"pow_defence": published.has_pow_defence})

    def wait_published() -> None:
        if not published.published.wait(timeout=600):
            return
        if log_format == "human":
            _tell(log_format, "  the onion service is published: Tor clients can reach it now")
        else:
            log.info("onion service published")

    threading.Thread(target=wait_published, daemon=True, name="onion-published").start()


class NodeServer(uvicorn.Server):
    """uvicorn's server with, besides its own listeners, the onion listener: the same app,
    lifespan, connection set and graceful shutdown, but the protocol that reads tor's PROXY
    line first. (uvicorn gives every socket of one server the same protocol.)"""

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        onion_listener: socket.socket | None = None,
        onion_protocol: type[asyncio.Protocol] | None = None,
    ) -> None:
        super().__init__(config)
        self._deferred_signals: list[int] = []
        self._onion_listener = onion_listener
        self._onion_protocol = onion_protocol

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's, except that the signal that stopped the server is raised again by
        `raise_captured_signals`, once the caller has cleaned up, and not on the way out of
        `run` (SIGTERM would end the process before the onion service is removed)."""
        with super().capture_signals():
            try:
                yield
            finally:
                self._deferred_signals = [*self._deferred_signals, *self._captured_signals]
                self._captured_signals.clear()

    def raise_captured_signals(self) -> None:
        deferred, self._deferred_signals = self._deferred_signals, []
        for captured in reversed(deferred):
            signal.raise_signal(captured)

    async def startup(self, sockets: Sequence[socket.socket] | None = None) -> None:
        await super().startup(sockets=list(sockets) if sockets is not None else None)
        if self._onion_listener is None or self._onion_protocol is None or self.should_exit:
            return
        onion_protocol = self._onion_protocol

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            return onion_protocol(  # type: ignore[call-arg]
                config=self.config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
                _loop=_loop,
            )

        loop = asyncio.get_running_loop()
        self.servers.append(
            await loop.create_server(
                create_protocol, sock=self._onion_listener, backlog=self.config.backlog
            )
        )


def listening_sockets_per_worker(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` TCP sockets bound to one `host`:`port` with SO_REUSEPORT, one per worker: the
    kernel spreads incoming connections over them by a hash of each connection's addresses
    and ports, where one shared socket gave most to whichever worker accepted first. A port
    in use, even by another SO_REUSEPORT group of this user, is InvalidInput as for one."""
    # A plain bind first: it fails on any listener there, which SO_REUSEPORT alone would
    # join. It also picks the port when `port` is 0.
    probe = listening_socket(host, port)
    port = probe.getsockname()[1]
    probe.close()
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(listening_socket(host, port, is_shared_port=True))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def listening_socket(host: str, port: int, *, is_shared_port: bool = False) -> socket.socket:
    """A TCP socket bound to `host`:`port` as uvicorn would bind it; a port already in use
    or an address this machine does not have is InvalidInput, in one sentence.
    `is_shared_port`: with SO_REUSEPORT, so other sockets of this user may bind it too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if is_shared_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if error.errno == errno.EADDRINUSE:
            raise InvalidInput(
                f"Port {port} is already in use on {host}; stop what runs there or pick "
                "another with --port."
            ) from None
        if error.errno == errno.EACCES:
            raise InvalidInput(
                f"Not allowed to listen on {where}; ports below 1024 need privileges, "
                "pick another with --port."
            ) from None
        raise InvalidInput(
            f"Cannot listen on {where} ({error.strerror or 'bind failed'}); check --host."
        ) from None
    return sock


def storage_scheme(config: ServerConfig) -> str:
    """The storage's kind (`sqlite`, `redis`...): never the URL, which may hold a password."""
    return config.resolved_storage_url().split(":", 1)[0]


def start_up_lines(config: ServerConfig, port: int | None) -> list[str]:
    """What a person starting the server on a terminal wants to know: where to open it
    (`port` None: nowhere but its onion service), where secrets are kept, how hard the
    proof of work is, and how to stop."""
    host = config.host
    shown, note = host, ""
    with contextlib.suppress(ValueError):  # a host name, not an address
        if ipaddress.ip_address(host).is_unspecified:
            shown, note = "127.0.0.1", f" (listening on every address of this machine, {host})"
    url = f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"
    if config.has_redis_storage():
        storage = f"{storage_scheme(config)} (secrets kept in Redis)"
    else:
        storage = f"SQLite in {config.data_dir.resolve() / 'atopos.db'}"
        if config.storage_url is not None:
            storage = f"SQLite at {config.storage_url.removeprefix('sqlite:///')}"
    work = f"{config.pow_bits} bits"
    if config.pow_bits == 0:
        work += " (for tests only: any answer passes)"
    serving = f"serving at {url}{note}" if port is not None else "serving on its onion only"
    lines = [
        f"Atopos {__version__} is {serving}",
        f"  storage: {storage}",
        f"  proof of work: {work}",
    ]
    if config.workers > 1:
        rooms = "rooms shared through the room Redis"
        if config.room_redis_url is None:
            rooms = "rooms are off: they need one, or a room Redis"
        lines.append(f"  workers: {config.workers} processes ({rooms})")
        if config.shares_counters_between_workers():
            lines.append("  rate limits: counted in memory the workers share (lost on restart)")
    return [*lines, "  Press Ctrl-C to stop. Logs follow (JSON instead: --log-format json)."]


def uvicorn_config(
    app: ASGIApp, host: str, port: int, limits: ConnectionLimits | None = None
) -> uvicorn.Config:
    """How Atopos runs on uvicorn (the tests' in-process servers use it too)."""
    limits = limits or ConnectionLimits()
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="auto",
        http=guarded_http_protocol(limits),
        timeout_keep_alive=int(limits.idle_timeout),
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=10,
        # Rooms (docs/protocol/rooms.md section 13): the largest frame plus a margin (a frame
        # a little over it reaches the relay and gets 4400 too_large; a far larger one is
        # cut by the WebSocket layer with 1009), no compression (it
        # would leak sizes and costs CPU per member), and a ping every 30 s that a peer must
        # answer within 90 s: a dead or silent peer is gone after at most 120 s.
        ws=QuietWebSocketProtocol,
        ws_max_size=MAX_FRAME_CHARS + 65_536,
        ws_per_message_deflate=False,
        ws_ping_interval=30.0,
        ws_ping_timeout=90.0,
    )


def _raise_descriptor_limit() -> None:
    """Take the hard limit on open files as the soft one: every connection is a descriptor,
    and the connection guard's cap is lowered to what the soft limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        # Refused above the kernel's nr_open: the guard then caps at the soft limit.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
