"""`atopos mix exit`: the exit service as a process of its own (docs/mixnet.md, "The exit
service"): it finds itself in the topology's `exits` by its key, attaches to its gateway,
and serves until SIGTERM / SIGINT or the end of the topology's window."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from atopos.clock import Clock
from atopos.crypto.randomness import RandomBytes
from atopos.errors import InvalidInput, NetworkError
from atopos.mixnet.client import MixnetClient
from atopos.mixnet.exit_service import ExitService
from atopos.mixnet.exit_streams import ExitStreams
from atopos.mixnet.node_keys import read_node_key
from atopos.mixnet.node_process import load_topology
from atopos.mixnet.settings import ClientSettings

__all__ = ["serve_exit"]


async def serve_exit(
    *,
    topology_path: Path,
    authority: Ed25519PublicKey,
    key_path: Path,
    upstream: str,
    settings: ClientSettings,
    clock: Clock,
    random_bytes: RandomBytes,
    announce: Callable[[str], None],
) -> None:
    """Serve as the exit whose key is in `key_path`, in front of the server at `upstream`."""
    _, key = read_node_key(key_path)
    topology = load_topology(topology_path, authority, clock)
    public_key = key.public_key().public_bytes_raw()
    me = next((e for e in topology.exits if e.public_key == public_key), None)
    gateway = topology.node(me.gateway_id) if me is not None else None
    if me is None or gateway is None:
        raise InvalidInput("This key is not the key of an exit of the topology.")
    client = MixnetClient(topology, gateway, key, me.mailbox_id, clock, random_bytes, settings)
    service = ExitService(
        client,
        httpx.AsyncClient(base_url=upstream, follow_redirects=False),
        clock,
        streams=ExitStreams(upstream, clock),
    )
    try:
        await service.start()
    except NetworkError:
        raise InvalidInput(
            f"The gateway at {gateway.host}:{gateway.port} cannot be reached."
        ) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    # Announced once the handlers are in, so a SIGTERM sent on seeing it stops cleanly.
    announce(f"Atopos exit service attached to the gateway at {gateway.host}:{gateway.port}.")
    try:
        remaining = max(0.0, topology.valid_until - clock.now())
        try:
            await asyncio.wait_for(stop.wait(), remaining)
        except TimeoutError:
            announce("The topology has expired; stopping.")
    finally:
        await service.close()
