"""`atopos mix keygen | serve | gateway` as real processes: a one-layer mixnet of two
processes carries a client's message to its own mailbox; bad setups exit 2 in one sentence."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.harness import free_port
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from atopos.clock import SystemClock
from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.mixnet.client import MixnetClient
from atopos.mixnet.settings import ClientSettings
from atopos.protocol.mix_topology import MixNode, Topology, sign_topology
from atopos.randomness import system_random_bytes
from tests.mixnet_support import AUTHORITY, VALID_FROM, VALID_UNTIL

ATOPOS = str(Path(sys.executable).with_name("atopos"))
PINNED = b64url_encode(AUTHORITY.public_key().public_bytes_raw())


def _atopos(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ATOPOS, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path, Topology]:
    keys = []
    for name in ("mix", "gateway"):
        done = _atopos("mix", "keygen", "--key-file", str(tmp_path / name), "--key-epoch", "3")
        assert done.returncode == 0, done.stderr
        keys.append(b64url_decode(done.stdout.strip()))
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600
    nodes = [
        MixNode(bytes([i + 1]) * 32, "127.0.0.1", free_port(), key, 3) for i, key in enumerate(keys)
    ]
    topology = Topology(1, VALID_FROM, VALID_UNTIL, ((nodes[0],),), (nodes[1],))
    document = tmp_path / "topology.json"
    document.write_bytes(sign_topology(topology, AUTHORITY))
    return tmp_path / "mix", tmp_path / "gateway", document, topology


def _start(*args: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [ATOPOS, "mix", *args, "--authority", PINNED], stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    line = process.stderr.readline()
    assert "listening on 127.0.0.1:" in line, line
    return process


@pytest.fixture
def processes(setup: tuple[Path, Path, Path, Topology]) -> Iterator[list[subprocess.Popen[str]]]:
    mix_key, gateway_key, document, _ = setup
    started = [
        _start("serve", "--layer", "1", "--topology", str(document), "--key-file", str(mix_key)),
        _start("gateway", "--topology", str(document), "--key-file", str(gateway_key)),
    ]
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.wait(10)


def test_two_processes_carry_a_message_and_stop_on_sigterm(
    setup: tuple[Path, Path, Path, Topology], processes: list[subprocess.Popen[str]]
) -> None:
    topology = setup[3]

    async def scenario() -> bytes:
        client = MixnetClient(
            topology,
            topology.gateways[0],
            X25519PrivateKey.generate(),
            system_random_bytes(32),
            SystemClock(),
            system_random_bytes,
            ClientSettings(send_rate=20.0, loop_rate=2.0, mean_delay_ms=5.0),
        )
        await client.start()
        try:
            client.send(client.address, b"through two processes")
            return await asyncio.wait_for(client.receive(), 30)
        finally:
            await client.close()

    assert asyncio.run(scenario()) == b"through two processes"
    for process in processes:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0


def test_bad_setups_exit_2_with_one_sentence(setup: tuple[Path, Path, Path, Topology]) -> None:
    mix_key, gateway_key, document, _ = setup
    base = ["mix", "serve", "--topology", str(document), "--key-file", str(mix_key)]
    cases = {
        "not layer 2": [*base, "--layer", "2", "--authority", PINNED],
        "not signed": [*base, "--layer", "1", "--authority", b64url_encode(bytes(32))],
        "not a gateway": [
            *["mix", "gateway", "--topology", str(document), "--key-file", str(mix_key)],
            *["--authority", PINNED],
        ],
        "not readable": [*base, "--layer", "1", "--authority", "nope!"],
    }
    for name, args in cases.items():
        done = _atopos(*args)
        assert done.returncode == 2, (name, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, (name, done.stderr)
        assert "Traceback" not in done.stderr
    again = _atopos("mix", "keygen", "--key-file", str(gateway_key))
    assert again.returncode == 2
    assert "never overwritten" in again.stderr


def test_sighup_takes_a_newer_topology_and_keeps_the_old_one_otherwise(
    setup: tuple[Path, Path, Path, Topology],
) -> None:
    mix_key, _, document, topology = setup
    process = _start(
        "serve", "--layer", "1", "--topology", str(document), "--key-file", str(mix_key)
    )
    assert process.stderr is not None
    try:
        document.write_text("not a topology")
        process.send_signal(signal.SIGHUP)
        assert process.stderr.readline().startswith("Kept topology 1: ")
        newer = dataclasses.replace(topology, serial=2)
        document.write_bytes(sign_topology(newer, AUTHORITY))
        process.send_signal(signal.SIGHUP)
        assert process.stderr.readline().strip() == "Topology 2 in use."
        document.write_bytes(sign_topology(topology, AUTHORITY))
        process.send_signal(signal.SIGHUP)
        assert "older" in process.stderr.readline()
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
