"""Publish the node as a v3 onion service through tor's control port (stem).

`atopos serve --onion` either starts Debian's `tor` itself (a private data directory, no
SOCKS port, owned by this process so it exits with it) or attaches to a running tor's
control port (`--tor-control`). Either way the service forwards the onion's port 80 to the
node's onion listener on loopback, and is removed again when the node stops.

Why SETCONF and not ADD_ONION: the node keys rate limits on the client's Tor circuit, which
tor only tells through `HiddenServiceExportCircuitID haproxy`. ADD_ONION (ephemeral services,
tor's control-spec) takes ports, flags, client auth and the PoW options, but no circuit-ID
export, so the service is configured with SETCONF as a `HiddenServiceDir` service. Its
directory is a private temporary one (0700, in $XDG_RUNTIME_DIR when there is one), holding
the key only while the node runs: it is overwritten and removed on exit, unless
`--onion-key-file` keeps the address (the key is then copied from and to that file, 0600).
Other services of an attached tor are kept as they were (stem's get/set_hidden_service_conf).

Tor's onion-service proof-of-work defence (`HiddenServicePoWDefensesEnabled`, tor 0.4.8 and
later when built with it) is turned on whenever the tor accepts it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import stem  # type: ignore[import-untyped]
import stem.connection  # type: ignore[import-untyped]
import stem.process  # type: ignore[import-untyped]
from stem.control import Controller, EventType  # type: ignore[import-untyped]

from atopos.errors import InvalidInput, Unavailable
from atopos.server.unix_socket_path import require_short_socket_path

__all__ = ["OnionOptions", "PublishedOnion", "publish_onion_service"]

# stem narrates every control command at debug level and its reader thread's shutdown at
# info, many lines a second: only its warnings reach the node's log.
logging.getLogger("stem").setLevel(logging.WARNING)

# tor's hs_ed25519_secret_key file: a 32-byte tag, then the 64-byte expanded secret key.
_KEY_FILE_NAME = "hs_ed25519_secret_key"
_KEY_TAG = b"== ed25519v1-secret: type0 ==\x00\x00\x00"
_KEY_FILE_BYTES = len(_KEY_TAG) + 64
_ONION_PORT = 80
_LAUNCH_TIMEOUT = 180
_HOSTNAME_TIMEOUT = 30.0
_HOSTNAME_POLL = 0.05
ENV_CONTROL_PASSWORD = "ATOPOS_TOR_CONTROL_PASSWORD"  # noqa: S105 (a variable's name)


@dataclasses.dataclass(frozen=True, slots=True)
class OnionOptions:
    """How to publish: through a running tor (`control`: HOST:PORT, PORT or a socket path)
    or a tor started here (with `tor_config`'s lines added to its torrc: bridges, a private
    network); `key_file` keeps the address across restarts."""

    control: str | None = None
    key_file: Path | None = None
    tor_config: Path | None = None
    tor_command: str = "tor"


@dataclasses.dataclass
class PublishedOnion:
    """The service while it runs: its address, whether tor took the PoW defence, and an
    event set once a descriptor has been uploaded (clients can then reach it)."""

    address: str
    has_pow_defence: bool
    published: threading.Event = dataclasses.field(default_factory=threading.Event)


@contextlib.contextmanager
def publish_onion_service(
    options: OnionOptions,
    target_port: int,
    *,
    on_starting_tor: Callable[[], None] = lambda: None,
) -> Iterator[PublishedOnion]:
    """Publish `127.0.0.1:target_port` as a v3 onion service while the block runs.

    Every problem (no tor, a control port that refuses us, a bad key file) is one sentence:
    Unavailable for tor, InvalidInput for our own settings."""
    key = _read_key_file(options.key_file) if options.key_file is not None else None
    with contextlib.ExitStack() as cleanup:
        runtime = Path(tempfile.mkdtemp(prefix="atopos-onion-", dir=_private_tmp()))
        cleanup.callback(_wipe_directory, runtime)
        if options.control is None:
            on_starting_tor()
            controller = cleanup.enter_context(_launched_tor(options, runtime))
        else:
            controller = cleanup.enter_context(_attached_tor(options.control))
        service_dir = runtime / "onion"
        service_dir.mkdir(mode=0o700)
        if key is not None:
            _write_private(service_dir / _KEY_FILE_NAME, key)
        published = _configure(controller, service_dir, target_port, cleanup)
        if options.key_file is not None and key is None:
            _save_key_file(options.key_file, (service_dir / _KEY_FILE_NAME).read_bytes())
        yield published


def _configure(
    controller: Any, service_dir: Path, target_port: int, cleanup: contextlib.ExitStack
) -> PublishedOnion:
    # Listening before the service exists: tor may upload its descriptor at once.
    uploads = _DescriptorUploads()
    with contextlib.suppress(stem.ControllerError):
        controller.add_event_listener(uploads.on_event, EventType.HS_DESC)
        cleanup.callback(_quietly, controller.remove_event_listener, uploads.on_event)
    try:
        before = controller.get_hidden_service_conf()
    except stem.ControllerError as exc:
        raise Unavailable("Tor did not tell its onion services; is it a tor 0.4.8+?") from exc
    ours: dict[str, object] = {
        "HiddenServicePort": [(_ONION_PORT, "127.0.0.1", target_port)],
        "HiddenServiceVersion": "3",
        "HiddenServiceExportCircuitID": "haproxy",
    }
    has_pow_defence = True
    try:
        controller.set_hidden_service_conf(
            {**before, str(service_dir): {**ours, "HiddenServicePoWDefensesEnabled": "1"}}
        )
    except (stem.InvalidArguments, stem.InvalidRequest):
        # A tor older than 0.4.8, or built without the PoW module.
        has_pow_defence = False
        try:
            controller.set_hidden_service_conf({**before, str(service_dir): ours})
        except stem.ControllerError as exc:
            raise Unavailable(
                "Tor refused the onion service; it must be tor 0.4.8 or later running as "
                "this user (docs/tor.md)."
            ) from exc
    except stem.ControllerError as exc:
        raise Unavailable("Tor refused the onion service (docs/tor.md).") from exc

    def remove() -> None:
        with contextlib.suppress(stem.ControllerError, stem.SocketError):
            controller.set_hidden_service_conf(before)

    cleanup.callback(remove)
    published = PublishedOnion(_wait_hostname(service_dir), has_pow_defence)
    uploads.watch(published)
    return published


class _DescriptorUploads:
    """Sets a service's `published` event on tor's first HS_DESC UPLOADED for its address,
    whether that came before the address was known or after."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._uploaded: set[str] = set()
        self._watched: PublishedOnion | None = None

    def on_event(self, event: Any) -> None:
        if event.action != "UPLOADED":
            return
        with self._lock:
            self._uploaded.add(f"{event.address}.onion")
            self._update()

    def watch(self, published: PublishedOnion) -> None:
        with self._lock:
            self._watched = published
            self._update()

    def _update(self) -> None:
        if self._watched is not None and self._watched.address in self._uploaded:
            self._watched.published.set()


def _wait_hostname(service_dir: Path) -> str:
    """The address tor writes once it has loaded (or made) the service's key."""
    hostname = service_dir / "hostname"
    pause = threading.Event()  # never set: its wait is a sleep that needs no clock
    for _ in range(int(_HOSTNAME_TIMEOUT / _HOSTNAME_POLL)):
        with contextlib.suppress(FileNotFoundError):
            text = hostname.read_text().strip()
            if text.endswith(".onion"):
                return text
        pause.wait(_HOSTNAME_POLL)
    raise Unavailable("Tor did not create the onion service in time.")


@contextlib.contextmanager
def _launched_tor(options: OnionOptions, runtime: Path) -> Iterator[Any]:

    if shutil.which(options.tor_command) is None:
        raise Unavailable(
            "The tor program is not installed (Debian: apt install tor); or attach to a "
            "running tor with --tor-control."
        )
    data = runtime / "tor"
    data.mkdir(mode=0o700)
    control = runtime / "control"
    require_short_socket_path(control, "tor's control socket")
    lines = [
        f"DataDirectory {data}",
        f"ControlPort unix:{control}",
        "CookieAuthentication 1",
        "SocksPort 0",
        "Log notice stdout",  # stem reads the bootstrap progress there
    ]
    if options.tor_config is not None:
        if not options.tor_config.is_file():
            raise InvalidInput(f"The tor configuration file {options.tor_config} is missing.")
        lines.append(f"%include {options.tor_config.resolve()}")
    torrc = runtime / "torrc"
    torrc.write_text("\n".join(lines) + "\n")
    try:
        process = stem.process.launch_tor(
            options.tor_command,
            torrc_path=str(torrc),
            timeout=_LAUNCH_TIMEOUT,
            take_ownership=True,
            close_output=True,
        )
    except OSError as exc:
        raise Unavailable(f"Tor did not start: {_one_line(exc)}.") from None
    try:
        with Controller.from_socket_file(str(control)) as controller:
            controller.authenticate()
            yield controller
    except stem.SocketError as exc:
        raise Unavailable("The tor started for the onion service went away.") from exc
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except Exception:
            process.kill()


@contextlib.contextmanager
def _attached_tor(control: str) -> Iterator[Any]:

    try:
        if control.startswith("/"):
            controller = Controller.from_socket_file(control)
        else:
            host, _, port = control.rpartition(":")
            controller = Controller.from_port(address=host or "127.0.0.1", port=int(port))
    except ValueError:
        raise InvalidInput("--tor-control must be HOST:PORT, PORT or a socket path.") from None
    except stem.SocketError:
        raise Unavailable(f"Tor's control port at {control} is not reachable.") from None
    with controller:
        try:
            controller.authenticate(password=os.environ.get(ENV_CONTROL_PASSWORD))
        except stem.connection.AuthenticationFailure:
            raise Unavailable(
                f"Tor's control port at {control} refused us; set {ENV_CONTROL_PASSWORD} or "
                "let this user read its cookie."
            ) from None
        yield controller


def _read_key_file(path: Path) -> bytes | None:
    """The key kept in `path` (tor's own format), or None when there is none yet."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        reason = (exc.strerror or "it cannot be opened").lower()
        raise InvalidInput(f"The onion key file {path} cannot be read: {reason}.") from None
    with os.fdopen(fd, "rb") as handle:
        if stat.S_IMODE(os.fstat(handle.fileno()).st_mode) & 0o077:
            raise InvalidInput(
                f"The onion key file {path} is readable by group or others; run chmod 600 on it."
            )
        key = handle.read(_KEY_FILE_BYTES + 1)
    if len(key) != _KEY_FILE_BYTES or not key.startswith(_KEY_TAG):
        raise InvalidInput(f"The onion key file {path} does not hold a v3 onion service key.")
    return key


def _save_key_file(path: Path, key: bytes) -> None:
    try:
        _write_private(path, key)
    except OSError as exc:
        reason = (exc.strerror or "it cannot be written").lower()
        raise InvalidInput(f"The onion key file {path} cannot be written: {reason}.") from None


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _wipe_directory(directory: Path) -> None:
    """Overwrite the service's secret key before the directory goes."""
    for key in directory.rglob(_KEY_FILE_NAME):
        with contextlib.suppress(OSError), key.open("r+b") as handle:
            handle.write(bytes(key.stat().st_size))
            handle.flush()
            os.fsync(handle.fileno())
    shutil.rmtree(directory, ignore_errors=True)


def _private_tmp() -> str | None:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return runtime if runtime and os.path.isdir(runtime) else None


def _quietly(action: Callable[..., object], *args: object) -> None:
    with contextlib.suppress(Exception):
        action(*args)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:200] or type(error).__name__
