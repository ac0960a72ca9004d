"""Rooms over Tor, on the private Tor network: `atopos room create` and two `atopos room join
--tor --script` clients reach a node's .onion address, each on a circuit of its own, and talk
both ways under one safety code. (The browser half, a Chromium proxied through the network's
SOCKS port, is tests/browser/test_tor_pages.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.harness import end_process

from tests.integration.test_room_cli import ScriptClient, epoch_with
from tests.integration.test_tor_onion import (
    OnionServer,
    atopos_over_tor,
    reaching_name,
    socks,
    start_onion_server,
)
from tests.tor_network import TorNetwork, tor_network  # noqa: F401 (the fixture)

# A new onion service's hand-over alone may take _REACH_TIMEOUT (test_tor_onion.py), on top
# of the network's start and the publication: more than pytest-timeout's default.
pytestmark = pytest.mark.timeout(600)

# Each client builds its own circuit and rendezvous to the onion: seconds alone, but a loaded
# CI machine once took longer than the room tests' 30 s (the CLI itself waits up to 120 s).
TOR_WAIT = 150.0


def room_links(output: str) -> dict[str, str]:
    """`room create`'s lines ("Creator link (keep it…): URL") by their label."""
    links = {}
    for line in output.splitlines():
        label, _, link = line.partition(": ")
        links[label.split(" (")[0]] = link
    return links


@pytest.fixture(scope="module")
def onion_node(
    tor_network: TorNetwork,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OnionServer]:
    server = start_onion_server(tor_network, tmp_path_factory.mktemp("onion-rooms"))
    try:
        yield server
    finally:
        end_process(server.process, grace=15)


def test_two_tor_clients_talk_in_a_room_on_the_onion_address(
    tor_network: TorNetwork,  # noqa: F811
    onion_node: OnionServer,
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    created = atopos_over_tor(
        tor_network,
        "room-creator",
        "--tor",
        "--server",
        onion_node.onion_url,
        "room",
        "create",
        "--name",
        "Over Tor",
        home=home,
    )
    assert created.returncode == 0, created.stderr
    links = room_links(created.stdout.decode())
    assert links["Room link"].startswith(f"{onion_node.onion_url}/r/")

    # A .onion address is reachable only through Tor: that the clients meet proves the way.
    # Each starts on a circuit that has reached the service: a member's WebSocket is tried
    # once, and a young network's first circuit may be refused at once.
    url = onion_node.onion_url
    ann = ScriptClient(
        home,
        links["Creator link"],
        "ann",
        env={"ATOPOS_TOR": socks(tor_network, reaching_name(tor_network, "ann", url))},
        options=("--tor",),
        wait=TOR_WAIT,
    )
    bob = ScriptClient(
        home,
        links["Room link"],
        "bob",
        env={"ATOPOS_TOR": socks(tor_network, reaching_name(tor_network, "bob", url))},
        options=("--tor",),
        wait=TOR_WAIT,
    )
    try:
        try:
            ann_code = ann.wait_for(epoch_with(2))["safety_code"]
        except AssertionError as error:
            raise AssertionError(f"{error}; bob {bob.state()}\n{tor_network.diagnosis()}") from None
        bob_code = bob.wait_for(epoch_with(2))["safety_code"]
        assert ann_code == bob_code
        ann.say("hello from ann over tor")
        bob.wait_for(lambda e: e.get("text") == "hello from ann over tor")
        bob.say("and bob answers")
        ann.wait_for(lambda e: e.get("text") == "and bob answers")
        assert ann.messages() == [("bob", "and bob answers")]
        assert bob.messages() == [("ann", "hello from ann over tor")]
    finally:
        for client in (bob, ann):
            if client.process.poll() is None:
                client.finish()
    assert "Traceback" not in onion_node.output()
