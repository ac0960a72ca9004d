"""A private Tor network on loopback for the tests, started once per test session.

Modelled on chutney's "basic" network, written small: three directory authorities (which are
relays and exits too), two more relays, a client whose SOCKS port the tests route `--tor`
through, and an onion host: a tor with a control port that `atopos serve --onion
--tor-control` attaches to. Every torrc is generated here, every address is 127.0.0.1, and
`TestingTorNetwork 1` with chutney's fast-voting options brings a consensus in well under a
minute. The relays are exits (clients count a relay an exit only when its policy opens
public addresses, so `accept *:*`); the tests only ask them for loopback servers. Each tor
is told to exit with the test process (`__OwningControllerProcess`), so a
crashed run leaves none behind. The network's start time is printed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from bench.harness import end_process, free_port

from atopos.client.socks_deadline import socks_transport, unreadable_socks_answers

__all__ = [
    "START_TIMEOUT",
    "TOR_TRY_ERRORS",
    "TorNetwork",
    "bounded_tor_client",
    "require_tor",
    "tor_network",
]

START_TIMEOUT = 90.0
TOR = shutil.which("tor") or "/usr/bin/tor"
TOR_GENCERT = shutil.which("tor-gencert") or "/usr/bin/tor-gencert"
_HOST = "127.0.0.1"

# chutney's torrc_templates/common.i and authority.i, trimmed to what a loopback network of
# current tors needs; the voting interval is chutney's fastest safe one.
_COMMON = """\
TestingTorNetwork 1
AssumeReachable 1
PathsNeededToBuildCircuits 0.67
TestingDirAuthVoteExit *
TestingDirAuthVoteHSDir *
TestingDirAuthVoteGuard *
TestingMinExitFlagThreshold 0
V3AuthNIntervalsValid 2
DataDirectory {dir}
Nickname {nick}
ShutdownWaitLength 0
SafeLogging 1
Log notice file {dir}/notice.log
__OwningControllerProcess {owner}
"""
_AUTHORITY = """\
AuthoritativeDirectory 1
V3AuthoritativeDirectory 1
ContactInfo {nick}@test.invalid
TestingV3AuthInitialVotingInterval 10
TestingV3AuthInitialVoteDelay 2
TestingV3AuthInitialDistDelay 2
V3AuthVotingInterval 10
V3AuthVoteDelay 2
V3AuthDistDelay 2
"""
_RELAY = """\
SocksPort 0
Address {host}
ORPort {host}:{orport}
DirPort {host}:{dirport}
ExitRelay 1
ExitPolicyRejectPrivate 0
ExitPolicyRejectLocalInterfaces 0
ExitPolicy accept *:*
"""
_CLIENT = """\
TestingClientMaxIntervalWithoutRequest 1
TestingClientDownloadInitialDelay 0
TestingClientConsensusDownloadInitialDelay 0
SocksPort {host}:{socksport}
ControlPort {host}:{controlport}
CookieAuthentication 1
"""


@dataclasses.dataclass
class _Tor:
    nick: str
    directory: Path
    orport: int = 0
    dirport: int = 0
    socks_port: int = 0
    control_port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.directory / "notice.log"

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@dataclasses.dataclass
class TorNetwork:
    """The running network: `socks_url` for clients, `onion_host_control` for servers."""

    directory: Path
    authorities: list[_Tor] = dataclasses.field(default_factory=list)
    relays: list[_Tor] = dataclasses.field(default_factory=list)
    client: _Tor | None = None
    onion_host: _Tor | None = None
    start_seconds: float = 0.0
    is_announced: bool = False

    @property
    def socks_url(self) -> str:
        assert self.client is not None
        return f"socks5h://{_HOST}:{self.client.socks_port}"

    @property
    def onion_host_control(self) -> str:
        assert self.onion_host is not None
        return f"{_HOST}:{self.onion_host.control_port}"

    @contextlib.contextmanager
    def onion_host_controller(self) -> Iterator[Any]:
        """An authenticated stem Controller of the onion host, for tests that look into it.

        The tors name this process their owner (`__OwningControllerProcess`), and stem,
        seeing that, sends TAKEOWNERSHIP on connecting: the tor would then exit when this
        connection closes, taking every later Tor test of the session with it. Ownership is
        handed back to the process before the connection closes."""
        from stem.control import Controller

        assert self.onion_host is not None
        with Controller.from_port(address=_HOST, port=self.onion_host.control_port) as controller:
            controller.authenticate()
            try:
                yield controller
            finally:
                controller.set_conf("__OwningControllerProcess", str(os.getpid()))
                controller.msg("DROPOWNERSHIP")

    def dir_authority_lines(self) -> str:
        """The torrc lines that point a tor at this network's authorities (a tor that
        `atopos serve --onion` starts itself needs them: `--tor-config`)."""
        return "".join(_dir_authority_line(a) for a in self.authorities)

    def torrc_for_joining(self) -> str:
        """What a new tor needs to join this network as a client."""
        return (
            "TestingTorNetwork 1\nPathsNeededToBuildCircuits 0.67\n"
            + _CLIENT.split("SocksPort")[0]
            + self.dir_authority_lines()
        )

    def start(self, timeout: float = START_TIMEOUT) -> None:
        started = time.monotonic()
        self.authorities = [self._node(f"auth{i}", relay=True) for i in range(3)]
        for authority in self.authorities:
            _make_authority_keys(authority)
        self.relays = [self._node(f"relay{i}", relay=True) for i in range(2)]
        self.client = self._node("client", relay=False)
        self.onion_host = self._node("onionhost", relay=False)
        authorities = self.dir_authority_lines()
        deadline = started + timeout
        relays = [*self.authorities, *self.relays]
        for node in [*relays, self.client, self.onion_host]:
            if node is self.client:
                # Clients start once a consensus lists every relay: one fetched earlier
                # (empty, the relays' descriptors not yet voted on) would make them wait
                # for their next download slot, 15 s or more.
                _wait_consensus(self.authorities[0], len(relays), deadline)
            torrc = _COMMON.format(dir=node.directory, nick=node.nick, owner=os.getpid())
            torrc += authorities
            if node in self.authorities:
                torrc += _AUTHORITY.format(nick=node.nick)
            if node.orport:
                torrc += _RELAY.format(host=_HOST, orport=node.orport, dirport=node.dirport)
            else:
                torrc += _CLIENT.format(
                    host=_HOST, socksport=node.socks_port, controlport=node.control_port
                )
                torrc += f"Log info file {node.directory}/info.log\n"  # for diagnosis()
            (node.directory / "torrc").write_text(torrc)
            node.process = subprocess.Popen(
                [TOR, "-f", str(node.directory / "torrc"), "--quiet"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        for node in (self.client, self.onion_host):
            _wait_bootstrapped(node, deadline)
        _wait_circuits(self.socks_url, deadline)
        self.start_seconds = time.monotonic() - started

    def diagnosis(self, lines: int = 30) -> str:
        """The latest onion-service and circuit lines of the client's and the onion host's
        info logs: what a failed Tor test prints, as the network is gone after the run."""
        parts = []
        for node in (self.client, self.onion_host):
            if node is None:
                continue
            try:
                text = (node.directory / "info.log").read_text(errors="replace")
            except FileNotFoundError:
                continue
            relevant = [line for line in text.splitlines() if _DIAGNOSTIC.search(line)]
            parts.append(f"--- tor {node.nick}, info log ---\n" + "\n".join(relevant[-lines:]))
        return "\n".join(parts)

    def stop(self) -> None:
        nodes = [*self.authorities, *self.relays, self.client, self.onion_host]
        for node in nodes:
            if node is not None and node.process is not None and node.process.poll() is None:
                node.process.terminate()
        for node in nodes:
            if node is not None and node.process is not None:
                end_process(node.process, grace=5)

    def _node(self, nick: str, *, relay: bool) -> _Tor:
        directory = self.directory / nick
        directory.mkdir(mode=0o700)
        if relay:
            return _Tor(nick, directory, orport=free_port(_HOST), dirport=free_port(_HOST))
        return _Tor(nick, directory, socks_port=free_port(_HOST), control_port=free_port(_HOST))


def _make_authority_keys(node: _Tor) -> None:
    """An authority's v3 identity and signing keys (tor-gencert), then its relay identity
    (tor --list-fingerprint), as chutney makes them."""
    keys = node.directory / "keys"
    keys.mkdir(mode=0o700)
    subprocess.run(
        [
            TOR_GENCERT,
            "--create-identity-key",
            "--passphrase-fd",
            "0",
            "-i",
            str(keys / "authority_identity_key"),
            "-s",
            str(keys / "authority_signing_key"),
            "-c",
            str(keys / "authority_certificate"),
            "-m",
            "12",
            "-a",
            f"{_HOST}:{node.dirport}",
        ],
        input=b"",
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            TOR,
            "--quiet",
            "--ignore-missing-torrc",
            "-f",
            os.devnull,
            "--list-fingerprint",
            "--orport",
            "1",
            "--dirserver",
            "x 127.0.0.1:1 ffffffffffffffffffffffffffffffffffffffff",
            "--datadirectory",
            str(node.directory),
        ],
        check=True,
        capture_output=True,
    )


def _dir_authority_line(node: _Tor) -> str:
    certificate = (node.directory / "keys" / "authority_certificate").read_text()
    match = re.search(r"^fingerprint ([0-9A-F]{40})$", certificate, re.MULTILINE)
    assert match is not None, "tor-gencert wrote no fingerprint"
    relay_fingerprint = (node.directory / "fingerprint").read_text().split()[1]
    return (
        f"DirAuthority {node.nick} orport={node.orport} no-v2 v3ident={match.group(1)} "
        f"{_HOST}:{node.dirport} {relay_fingerprint}\n"
    )


def _wait_consensus(authority: _Tor, relays: int, deadline: float) -> None:
    """Poll an authority's consensus until it lists `relays` relays."""
    consensus = authority.directory / "cached-microdesc-consensus"
    while time.monotonic() < deadline:
        assert authority.process is not None
        if authority.process.poll() is not None:
            raise RuntimeError(f"tor {authority.nick} exited: {authority.log_text()[-2000:]}")
        with contextlib.suppress(FileNotFoundError):
            if consensus.read_text(errors="replace").count("\nr ") >= relays:
                return
        time.sleep(0.2)  # polling interval, not a wait for readiness
    raise TimeoutError(f"no consensus with every relay: {authority.log_text()[-2000:]}")


def _wait_bootstrapped(node: _Tor, deadline: float) -> None:
    """Poll the tor's log until it has bootstrapped to 100%."""
    while time.monotonic() < deadline:
        assert node.process is not None
        if node.process.poll() is not None:
            raise RuntimeError(f"tor {node.nick} exited: {node.log_text()[-2000:]}")
        if "Bootstrapped 100%" in node.log_text():
            return
        time.sleep(0.2)  # polling interval, not a wait for readiness
    raise TimeoutError(f"tor {node.nick} did not bootstrap: {node.log_text()[-2000:]}")


# What `diagnosis` keeps of an info log: onion services, circuits and the failures of both.
_DIAGNOSTIC = re.compile(r"hs_|rend|intro|descriptor|[Gg]iving up|fail|timed out")

# What one try through tor's SOCKS port can end in: httpx's errors, and the SOCKS answers
# its parser does not know (tor's onion-specific codes, 0xF0-0xF7).
TOR_TRY_ERRORS = (httpx.HTTPError, *unreadable_socks_answers())


def bounded_tor_client(proxy: str, timeout: float) -> httpx.Client:
    """httpx through `proxy` on the CLI's transport, whose SOCKS handshake is bounded by the
    connect timeout too: plain httpx waits as long as tor does (up to 120 s a rendezvous)."""
    return httpx.Client(transport=socks_transport(proxy, verify=True), timeout=timeout)


# Isolated streams the network must carry before a test gets it: each SOCKS user name is a
# circuit of its own (IsolateSOCKSAuth), as the tests' own names are.
_PROBE_CIRCUITS = 4


def _wait_circuits(socks_url: str, deadline: float) -> None:
    """Until a GET through each of a few fresh circuits reaches a loopback listener.

    "Bootstrapped 100%" says the client has a consensus and one circuit; a young network's
    next circuits can still fail (a relay whose descriptor the client lacks yet), and the
    SOCKS port then answers "general failure". Tests start once such failures are over."""
    with socket.socket() as listener:
        listener.bind((_HOST, 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        stop = threading.Event()

        def answer() -> None:
            listener.settimeout(0.2)
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except OSError:
                    continue
                with conn:
                    conn.settimeout(5)
                    with contextlib.suppress(OSError):
                        conn.recv(4096)
                        conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        try:
            for circuit in range(_PROBE_CIRCUITS):
                proxy = socks_url.replace("socks5h://", f"socks5h://probe{circuit}:x@")
                last: Exception | None = None
                while True:
                    try:
                        with bounded_tor_client(proxy, timeout=10) as client:
                            if client.get(f"http://{_HOST}:{port}/").status_code == 204:
                                break
                    except TOR_TRY_ERRORS as exc:
                        last = exc
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"no stream through circuit {circuit}: {last!r}")
                    time.sleep(0.5)  # polling interval, not a wait for readiness
        finally:
            stop.set()
            thread.join(timeout=5)


# -- one network per session, shared by every Tor test module -----------------------------

_lock = threading.Lock()
_shared: TorNetwork | None = None
_users = 0


@contextlib.contextmanager
def _shared_network() -> Iterator[TorNetwork]:
    global _shared, _users
    with _lock:
        if _shared is None:
            network = TorNetwork(Path(tempfile.mkdtemp(prefix="atopos-tor-")))
            try:
                network.start()
            except BaseException:
                network.stop()
                raise
            _shared = network
        _users += 1
    try:
        yield _shared
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _shared is not None:
                _shared.stop()
                shutil.rmtree(_shared.directory, ignore_errors=True)
                _shared = None


def require_tor() -> None:
    """Fail, not skip, without tor: CI installs it (scripts/system-deps.sh), and a skipped
    Tor test would hide that nothing of Tor was tested."""
    if not (os.access(TOR, os.X_OK) and os.access(TOR_GENCERT, os.X_OK)):
        pytest.fail("tor and tor-gencert are not installed: run scripts/system-deps.sh")


@pytest.fixture(scope="session")
def tor_network(request: pytest.FixtureRequest) -> Iterator[TorNetwork]:
    """The private Tor network, started on first use and stopped after the session; its
    start time goes to the terminal (past pytest's output capture)."""
    require_tor()
    with _shared_network() as network:
        if not network.is_announced:
            network.is_announced = True
            line = f"private Tor network up in {network.start_seconds:.1f} s ({network.directory})"
            capture = request.config.pluginmanager.get_plugin("capturemanager")
            with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
                print(f"\n{line}")
        yield network
