"""The server as an onion service and the CLI over Tor, on the private Tor network: real tor
processes, a real `atopos serve --onion`, the real CLI with `--tor`.

Tor isolates streams by SOCKS credentials (IsolateSOCKSAuth, on by default), so each
`socks5h://NAME:x@...` below is a client of its own, on a circuit of its own: the node, which
keys limits on the circuit its onion listener reads from tor's PROXY line, must count them
apart although every one of them reaches it from 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import socket
import stat
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from bench.harness import end_process, free_port

from atopos.client.socks_deadline import unreadable_socks_answers
from tests.api_client import OCTETS, access_params, envelope
from tests.servers import ATOPOS, serve_with_a_long_tmpdir, wait_healthy
from tests.tor_network import (  # noqa: F401 (tor_network: the fixture)
    TOR_TRY_ERRORS,
    TorNetwork,
    bounded_tor_client,
    tor_network,
)

# A new onion service's hand-over alone may take _REACH_TIMEOUT (below), on top
# of the network's start and the publication: more than pytest-timeout's default.
pytestmark = pytest.mark.timeout(600)

PUBLISH_TIMEOUT = 60.0
CREATE_LIMIT = 3
BASE_BITS = 8


@dataclasses.dataclass
class OnionServer:
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int
    onion_url: str

    @property
    def clearnet_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_onion_server(
    network: TorNetwork, directory: Path, *extra: str, env: dict[str, str] | None = None
) -> OnionServer:
    """`atopos serve --onion`, attached to the network's onion host, once its descriptor is
    uploaded (Tor clients can reach it from then on)."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = directory / "serve.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                ATOPOS,
                "serve",
                *(() if "--tor-config" in extra else ("--onion", "--tor-control")),
                *(() if "--tor-config" in extra else (network.onion_host_control,)),
                "--port",
                str(port),
                "--data",
                str(directory / "data"),
                "--pow-bits",
                str(BASE_BITS),
                "--log-format",
                "json",
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "ATOPOS_RATE_CREATE": str(CREATE_LIMIT),
                "ATOPOS_LOG_LEVEL": "info",
                **(env or {}),
            },
        )
    deadline = time.monotonic() + PUBLISH_TIMEOUT
    while True:
        text = log_path.read_text(errors="replace")
        match = re.search(r"^http://([a-z2-7]{56}\.onion)/$", text, re.MULTILINE)
        if match and '"msg":"onion service published"' in text:
            server = OnionServer(process, log_path, port, f"http://{match.group(1)}")
            try:
                if "--onion-only" not in extra:
                    wait_healthy(server.clearnet_url, process)
                _wait_reachable_over_tor(network, server)
            except BaseException:
                end_process(process)
                raise
            return server
        if process.poll() is not None or time.monotonic() > deadline:
            end_process(process)
            raise RuntimeError(f"the onion service did not come up:\n{text[-3000:]}")
        time.sleep(0.1)  # polling interval, not a wait for readiness


# Fresh circuits (each its own SOCKS user name) that must reach a new service before a test
# gets it: twice in CI a young service that one probe had reached refused the next fresh
# client at once, and once every probe failed for three minutes before one got through.
_REACH_PROBES = 3
# One probe's try, SOCKS handshake included (the CLI's transport bounds it; tor alone would
# wait up to 120 s for a rendezvous); a hand-over slower than _SLOW_REACH warns with the
# network's diagnosis, so CI's output says why even when the test then passes.
_PROBE_TIMEOUT = 30.0
_REACH_TIMEOUT = 240.0
_SLOW_REACH = 20.0


def _wait_reachable_over_tor(network: TorNetwork, server: OnionServer) -> None:
    """Until Tor clients on fresh circuits reach the service: "published" follows the first
    directory's receipt of the descriptor, and a client that asks another one before its
    copy arrives is answered "general failure"."""
    started = time.monotonic()
    deadline = started + _REACH_TIMEOUT
    tries = 0
    for probe in range(_REACH_PROBES):
        while True:
            tries += 1
            proxy = socks(network, f"onion-probe-{server.port}-{probe}-{tries}")
            with (
                contextlib.suppress(*TOR_TRY_ERRORS),
                bounded_tor_client(proxy, timeout=_PROBE_TIMEOUT) as client,
            ):
                if client.get(f"{server.onion_url}/healthz").status_code == 200:
                    break
            if server.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the onion service was published but Tor probe {probe} did not reach "
                    f"it in {tries} tries\n{network.diagnosis()}"
                )
            time.sleep(0.5)  # polling interval, not a wait for readiness
    took = time.monotonic() - started
    if took > _SLOW_REACH:
        warnings.warn(
            f"Tor clients reached a new onion service only after {took:.0f} s "
            f"({tries} tries for {_REACH_PROBES} probes)\n{network.diagnosis()}",
            stacklevel=2,
        )


@pytest.fixture(scope="module")
def onion_server(
    tor_network: TorNetwork,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OnionServer]:
    server = start_onion_server(tor_network, tmp_path_factory.mktemp("onion"))
    try:
        yield server
    finally:
        end_process(server.process, grace=15)


def socks(network: TorNetwork, client: str) -> str:
    """The network's SOCKS proxy as one isolated client (its own circuits)."""
    return network.socks_url.replace("socks5h://", f"socks5h://{client}:x@")


# Tor can answer "cannot reach" at once when a circuit to the service fails; as a user
# would, a command is run again, on new circuits (and a failure prints `diagnosis()`).
_TOR_ATTEMPTS = 3


def atopos_over_tor(
    network: TorNetwork, client: str, *args: str, stdin: bytes = b"", home: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    """`atopos ARGS` through Tor as the isolated `client`, again on fresh circuits (at most
    `_TOR_ATTEMPTS` in all) while Tor answers that it cannot reach the server. A failure
    still failing at the end carries every attempt's stderr and the network's diagnosis."""
    said: list[bytes] = []
    for attempt in range(_TOR_ATTEMPTS):
        name = client if attempt == 0 else f"{client}-again{attempt}"
        result = atopos(*args, proxy=socks(network, name), stdin=stdin, home=home)
        said.append(result.stderr)
        if result.returncode != 5 or b"could not reach the server" not in result.stderr:
            break
    if result.returncode != 0:
        result.stderr = b"".join(said) + network.diagnosis().encode()
    return result


# What a first connection through a fresh circuit can end in before any request reaches the
# service: tor's refusal ("general failure", or an onion code socksio cannot read) or a timeout.
_CIRCUIT_FAILURES = (
    httpx.ProxyError,
    httpx.ConnectError,
    httpx.ConnectTimeout,
    *unreadable_socks_answers(),
)


@contextlib.contextmanager
def onion_client(network: TorNetwork, client: str, onion_url: str) -> Iterator[httpx.Client]:
    """httpx through Tor as the isolated `client` (or a fresh name after tor's refusal,
    `_reaching_client`), once its circuit has reached the service. It keeps its connection,
    so its circuit, for the test."""
    with _reaching_client(network, client, onion_url) as (_, connected):
        yield connected


def reaching_name(network: TorNetwork, client: str, onion_url: str) -> str:
    """A SOCKS user name for `client` whose circuit has just reached the service: a client
    started with it (a room member, say, whose WebSocket is not tried again) reuses that
    circuit instead of building its first one."""
    with _reaching_client(network, client, onion_url) as (name, _):
        return name


@contextlib.contextmanager
def _reaching_client(
    network: TorNetwork, client: str, onion_url: str
) -> Iterator[tuple[str, httpx.Client]]:
    """A SOCKS user name and an httpx client through it, once a GET of /healthz (which no
    limit counts) has had an answer from the service. A fresh circuit can fail at once,
    before any request arrives; as `atopos_over_tor` does, that is tried again on new
    circuits (at most `_TOR_ATTEMPTS`)."""
    refusals: list[str] = []
    for attempt in range(_TOR_ATTEMPTS):
        name = client if attempt == 0 else f"{client}-again{attempt}"
        with bounded_tor_client(socks(network, name), timeout=60) as connected:
            try:
                connected.get(f"{onion_url}/healthz")
            except _CIRCUIT_FAILURES as exc:
                refusals.append(f"{name}: {exc!r}")
                continue
            yield name, connected
            return
    raise AssertionError(
        f"no circuit of {client} reached {onion_url}:\n"
        + "\n".join(refusals)
        + f"\n{network.diagnosis()}"
    )


def atopos(
    *args: str, proxy: str, stdin: bytes = b"", home: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "ATOPOS_TOR": proxy}
    if home is not None:
        env["ATOPOS_HOME"] = str(home)
    return subprocess.run(
        [ATOPOS, *args],
        input=stdin,
        capture_output=True,
        timeout=180,
        check=False,
        env=env,
    )


def test_secret_create_and_reveal_over_tor_with_the_onion_address(
    tor_network: TorNetwork,  # noqa: F811
    onion_server: OnionServer,
    tmp_path: Path,
) -> None:
    proxy = socks(tor_network, "cli-text")
    created = atopos(
        "--tor", "--server", onion_server.onion_url, "secret", "create", proxy=proxy, stdin=b"hi"
    )
    assert created.returncode == 0, created.stderr
    link = created.stdout.decode().strip()
    assert link.startswith(f"{onion_server.onion_url}/s/")
    # --tor after the command, as DESIGN.md allows.
    revealed = atopos("secret", "reveal", link, "--tor", proxy=proxy)
    assert (revealed.returncode, revealed.stdout) == (0, b"hi"), revealed.stderr
    again = atopos("secret", "reveal", link, "--tor", proxy=proxy)
    assert again.returncode == 3

    proxy = socks(tor_network, "cli-file")
    content = os.urandom(300_000)
    source = tmp_path / "photo.bin"
    source.write_bytes(content)
    created = atopos(
        "--tor",
        "--server",
        onion_server.onion_url,
        "secret",
        "create",
        "--file",
        str(source),
        proxy=proxy,
    )
    assert created.returncode == 0, created.stderr
    target = tmp_path / "out.bin"
    revealed = atopos(
        "--tor", "secret", "reveal", created.stdout.decode().strip(), "-o", str(target), proxy=proxy
    )
    assert revealed.returncode == 0, revealed.stderr
    assert target.read_bytes() == content


def test_two_circuits_have_separate_budgets_and_difficulties(
    tor_network: TorNetwork,  # noqa: F811
    onion_server: OnionServer,
) -> None:
    url = onion_server.onion_url
    body = envelope(b"x")[0]
    with (
        onion_client(tor_network, "alice", url) as alice,
        onion_client(tor_network, "bob", url) as bob,
    ):
        sid = alice.post(
            f"{url}/api/v1/secrets", params=access_params(body), content=body, headers=OCTETS
        ).json()["id"]
        # Alice fails the ticket step four times: her price rises by three bits.
        for _ in range(4):
            failed = alice.post(
                f"{url}/api/v1/secrets/{sid}/ticket", json={"challenge": "forged", "nonce": 0}
            )
            assert failed.status_code == 403, failed.text
        alice_bits = alice.post(f"{url}/api/v1/secrets/{sid}/challenge").json()["bits"]
        bob_bits = bob.post(f"{url}/api/v1/secrets/{sid}/challenge").json()["bits"]
        assert (alice_bits, bob_bits) == (BASE_BITS + 3, BASE_BITS)

        # Alice spends her creation budget (one spent above); Bob still has all of his.
        statuses = [
            alice.post(
                f"{url}/api/v1/secrets", params=access_params(body), content=body, headers=OCTETS
            ).status_code
            for _ in range(CREATE_LIMIT)
        ]
        assert statuses == [201] * (CREATE_LIMIT - 1) + [429]
        assert [
            bob.post(
                f"{url}/api/v1/secrets", params=access_params(body), content=body, headers=OCTETS
            ).status_code
            for _ in range(CREATE_LIMIT)
        ] == [201] * CREATE_LIMIT


def test_a_proxy_line_sent_to_the_open_listener_is_refused(onion_server: OnionServer) -> None:
    """Anyone on the network could write tor's PROXY line to the open port to pose as a
    circuit of their choosing: there it is no HTTP, and is answered 400."""
    request = (
        b"PROXY TCP6 fc00:dead:beef:4dad::0:7 ::1 7 80\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", onion_server.port), timeout=10) as sock:
        sock.sendall(request)
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]


def test_the_onion_key_file_keeps_the_address(
    tor_network: TorNetwork,  # noqa: F811
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "onion.key"
    first = start_onion_server(tor_network, tmp_path / "first", "--onion-key-file", str(key_file))
    try:
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    finally:
        _stop(first)
    second = start_onion_server(tor_network, tmp_path / "second", "--onion-key-file", str(key_file))
    try:
        assert second.onion_url == first.onion_url
        with onion_client(tor_network, "keyfile", second.onion_url) as client:
            assert client.get(f"{second.onion_url}/healthz").json()["status"] == "ok"
    finally:
        _stop(second)
    # Without the file, a new address each time.
    third = start_onion_server(tor_network, tmp_path / "third")
    try:
        assert third.onion_url != first.onion_url
    finally:
        _stop(third)


def test_the_service_is_removed_from_tor_when_the_server_stops(
    tor_network: TorNetwork,  # noqa: F811
    tmp_path: Path,
) -> None:
    with tor_network.onion_host_controller() as controller:
        others = controller.get_hidden_service_conf()
        server = start_onion_server(tor_network, tmp_path / "gone")
        running = controller.get_hidden_service_conf()
        (ours,) = set(running) - set(others)
        assert running[ours]["HiddenServiceExportCircuitID"] == "haproxy"
        assert Path(ours, "hs_ed25519_secret_key").exists()
        _stop(server)
        # Other services of the tor are left as they were; ours and its key are gone.
        assert controller.get_hidden_service_conf() == others
        assert not Path(ours).exists()


def _stop(server: OnionServer) -> None:
    server.process.send_signal(signal.SIGTERM)
    try:
        # uvicorn ends gracefully, then SIGTERM is raised again once the service is gone.
        assert server.process.wait(timeout=20) == -signal.SIGTERM, server.output()[-2000:]
    finally:
        end_process(server.process)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(ConnectionResetError, TimeoutError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_onion_only_with_a_tor_of_its_own(
    tor_network: TorNetwork,  # noqa: F811
    tmp_path: Path,
) -> None:
    """No --tor-control: `atopos serve` starts tor itself (here told by --tor-config to join
    the private network), listens on no open port, and its tor ends with it."""
    tor_config = tmp_path / "torrc-extra"
    tor_config.write_text(tor_network.torrc_for_joining())
    # Not in tmp_path: tor's control socket goes in it, and its path must fit 107 bytes.
    runtime = Path(tempfile.mkdtemp(prefix="atopos-t-"))
    env = {"TMPDIR": str(runtime), "XDG_RUNTIME_DIR": ""}
    server = start_onion_server(
        tor_network, tmp_path / "own", "--onion-only", "--tor-config", str(tor_config), env=env
    )
    try:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
        with onion_client(tor_network, "own-tor", server.onion_url) as client:
            assert client.get(f"{server.onion_url}/healthz").json()["status"] == "ok"
        (own,) = runtime.iterdir()
        tor_pids = _processes_naming(own)
        assert tor_pids, "no tor process runs from the node's directory"
    finally:
        _stop(server)
    assert not any(runtime.iterdir())
    runtime.rmdir()
    assert not any(_is_running(pid) for pid in tor_pids)


def test_a_temporary_directory_too_long_for_tors_control_socket_is_one_sentence(
    tmp_path: Path,
) -> None:
    """tor itself would only say "Failed to bind one of the listener ports": the node names
    the path and the cure before it starts tor, exits 2 and leaves nothing behind."""
    long_dir, last_line = serve_with_a_long_tmpdir(tmp_path, "--onion-only")
    assert last_line.startswith("Error: The path of tor's control socket, "), last_line
    assert f"{long_dir}/atopos-onion-" in last_line
    assert "set TMPDIR to a shorter directory" in last_line


def _processes_naming(directory: Path) -> list[int]:
    """The processes whose command line names `directory` (the node's tor)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if str(directory).encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
    return pids


def _is_running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status
