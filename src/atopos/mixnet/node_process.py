"""Running one mix node or gateway as a process (`atopos mix serve | gateway`): load the key
file and the signed topology, find this node in it by its public key, serve until SIGTERM or
SIGINT, or until the topology's window ends (a node never serves an expired topology).
SIGHUP re-reads the topology file and takes it if it verifies, is not older, and still has
this node with the same key and role; otherwise the node keeps the one it has."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from atopos.clock import Clock
from atopos.crypto.base64url import b64url_decode
from atopos.crypto.randomness import RandomBytes
from atopos.errors import InvalidInput
from atopos.mixnet.node import MixNodeService
from atopos.mixnet.node_keys import read_node_key
from atopos.mixnet.settings import NodeSettings
from atopos.protocol.mix_topology import (
    MAX_TOPOLOGY_BYTES,
    InvalidTopology,
    MixNode,
    Topology,
    read_topology,
)

__all__ = ["load_topology", "parse_authority", "serve_node"]


def parse_authority(text: str) -> Ed25519PublicKey:
    """The pinned topology authority: its Ed25519 public key in unpadded base64url."""
    try:
        return Ed25519PublicKey.from_public_bytes(b64url_decode(text.strip()))
    except ValueError:
        raise InvalidInput(
            "The topology authority is not a base64url Ed25519 public key."
        ) from None


def load_topology(path: Path, authority: Ed25519PublicKey, clock: Clock) -> Topology:
    """The verified topology in the file at `path`; InvalidInput for anything else."""
    try:
        with path.open("rb") as file:
            document = file.read(MAX_TOPOLOGY_BYTES + 1)
    except OSError:
        raise InvalidInput("The topology file cannot be read.") from None
    try:
        return read_topology(document, authority, clock.now())
    except InvalidTopology:
        raise InvalidInput(
            "The topology is not signed by the pinned authority, is malformed, or is not valid now."
        ) from None


def _find_me(topology: Topology, public_key: bytes, key_epoch: int, layer: int | None) -> MixNode:
    me = next((n for n in topology.nodes() if n.public_key == public_key), None)
    if me is None or me.key_epoch != key_epoch:
        raise InvalidInput("This node's key (and key epoch) is not in the topology.")
    actual = topology.layer_of(me.node_id)
    if layer is None and actual is not None:
        raise InvalidInput(f"This key belongs to a mix node of layer {actual + 1}, not a gateway.")
    if layer is not None and actual != layer - 1:
        where = "a gateway" if actual is None else f"layer {actual + 1}"
        raise InvalidInput(f"This key belongs to {where}, not layer {layer}.")
    return me


async def serve_node(
    *,
    topology_path: Path,
    authority: Ed25519PublicKey,
    key_path: Path,
    layer: int | None,
    settings: NodeSettings,
    clock: Clock,
    random_bytes: RandomBytes,
    announce: Callable[[str], None],
) -> None:
    """Serve as the mix node of `layer` (1-based), or as a gateway when `layer` is None."""
    key_epoch, key = read_node_key(key_path)
    topology = load_topology(topology_path, authority, clock)
    me = _find_me(topology, key.public_key().public_bytes_raw(), key_epoch, layer)
    service = MixNodeService(me, {key_epoch: key}, topology, clock, random_bytes, settings)
    try:
        await service.start()
    except OSError:
        raise InvalidInput(f"Port {me.port} on {me.host} cannot be listened on.") from None
    stop = asyncio.Event()
    reload = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload.set)
    # Announced only once the handlers are in: a SIGHUP sent on seeing this line must reload,
    # not hit the default action (which ends the process).
    what = "gateway" if layer is None else f"mix node of layer {layer}"
    announce(f"Atopos {what} listening on {me.host}:{me.port}.")
    try:
        while not stop.is_set():
            remaining = max(0.0, service.core.topology.valid_until - clock.now())
            waiters = {loop.create_task(stop.wait()), loop.create_task(reload.wait())}
            done, pending = await asyncio.wait(
                waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()
            if not done:
                announce("The topology has expired; stopping.")
                return
            if reload.is_set():
                reload.clear()
                announce(_reload(service, topology_path, authority, clock, key_epoch, layer))
    finally:
        await service.close()


def _reload(
    service: MixNodeService,
    path: Path,
    authority: Ed25519PublicKey,
    clock: Clock,
    key_epoch: int,
    layer: int | None,
) -> str:
    """Take the topology file's document if it fits; one sentence saying what happened."""
    try:
        topology = load_topology(path, authority, clock)
        me = _find_me(topology, service.me.public_key, key_epoch, layer)
    except InvalidInput as error:
        return f"Kept topology {service.core.topology.serial}: {error.message}"
    if topology.serial < service.core.topology.serial or me != service.me:
        return (
            f"Kept topology {service.core.topology.serial}: the file's is older, or moves "
            "this node."
        )
    service.use_topology(topology)
    return f"Topology {topology.serial} in use."
