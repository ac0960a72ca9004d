"""`atopos mix serve | gateway | exit | keygen`: run a mix node, a gateway or the exit service
in front of an Atopos server, make a node key (docs/mixnet.md, "Running nodes")."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer

from atopos.clock import SystemClock
from atopos.crypto.base64url import b64url_encode
from atopos.errors import InvalidInput
from atopos.mixnet.node_keys import write_node_key
from atopos.mixnet.settings import EXIT_SEND_RATE, ClientSettings, NodeSettings
from atopos.protocol.mix_route import DEFAULT_MEAN_DELAY_MS
from atopos.protocol.mix_topology import MAX_LAYERS
from atopos.randomness import system_random_bytes

__all__ = ["app"]

app = typer.Typer(
    no_args_is_help=True, help="Mixnet nodes: mix nodes, gateways, the exit service, node keys."
)

TopologyFile = Annotated[
    Path,
    typer.Option(
        "--topology", dir_okay=False, metavar="FILE", help="The signed topology document."
    ),
]
Authority = Annotated[
    str,
    typer.Option(
        "--authority",
        envvar="ATOPOS_MIX_AUTHORITY",
        metavar="KEY",
        help="The topology authority's Ed25519 public key (base64url) to pin. "
        "Env: ATOPOS_MIX_AUTHORITY.",
    ),
]
KeyFile = Annotated[
    Path,
    typer.Option("--key-file", dir_okay=False, metavar="FILE", help="This node's key file."),
]
LoopRate = Annotated[
    float,
    typer.Option("--loop-rate", min=0.0, max=1000.0, metavar="PER_SECOND", help="Loop cover."),
]
DropRate = Annotated[
    float,
    typer.Option("--drop-rate", min=0.0, max=1000.0, metavar="PER_SECOND", help="Drop cover."),
]
MeanDelay = Annotated[
    float,
    typer.Option(
        "--mean-delay-ms",
        min=0.0,
        max=60_000.0,
        metavar="MS",
        help="Mean per-hop delay of this node's own cover packets.",
    ),
]


def _run(
    topology: Path,
    authority: str,
    key_file: Path,
    layer: int | None,
    settings: NodeSettings,
) -> None:
    # Imported here: the node (asyncio, Sphinx) is a tenth of a second of every `atopos`
    # command's start-up, and only these two commands run it.
    from atopos.mixnet.node_process import parse_authority, serve_node

    asyncio.run(
        serve_node(
            topology_path=topology,
            authority=parse_authority(authority),
            key_path=key_file,
            layer=layer,
            settings=settings,
            clock=SystemClock(),
            random_bytes=system_random_bytes,
            announce=lambda line: print(line, file=sys.stderr, flush=True),
        )
    )


@app.command()
def serve(
    layer: Annotated[
        int,
        typer.Option("--layer", min=1, max=MAX_LAYERS, metavar="N", help="This node's layer."),
    ],
    topology: TopologyFile,
    authority: Authority,
    key_file: KeyFile,
    loop_rate: LoopRate = 1.0,
    drop_rate: DropRate = 1.0,
    mean_delay_ms: MeanDelay = DEFAULT_MEAN_DELAY_MS,
) -> None:
    """Run the mix node of layer N whose key is in --key-file."""
    settings = NodeSettings(mean_delay_ms=mean_delay_ms, loop_rate=loop_rate, drop_rate=drop_rate)
    _run(topology, authority, key_file, layer, settings)


@app.command()
def gateway(
    topology: TopologyFile,
    authority: Authority,
    key_file: KeyFile,
    loop_rate: LoopRate = 1.0,
    drop_rate: DropRate = 1.0,
    mean_delay_ms: MeanDelay = DEFAULT_MEAN_DELAY_MS,
) -> None:
    """Run the gateway whose key is in --key-file: clients connect here, their mail waits."""
    settings = NodeSettings(mean_delay_ms=mean_delay_ms, loop_rate=loop_rate, drop_rate=drop_rate)
    _run(topology, authority, key_file, None, settings)


@app.command("exit")
def exit_service(
    topology: TopologyFile,
    authority: Authority,
    key_file: KeyFile,
    upstream: Annotated[
        str,
        typer.Option("--upstream", metavar="URL", help="The Atopos server this exit asks."),
    ],
    send_rate: Annotated[
        float,
        typer.Option(
            "--send-rate", min=0.1, max=10_000.0, metavar="PER_SECOND", help="Packets sent."
        ),
    ] = EXIT_SEND_RATE,
    mean_delay_ms: MeanDelay = DEFAULT_MEAN_DELAY_MS,
) -> None:
    """Run the exit service whose key (made by `keygen`) the topology's `exits` names."""
    # Imported here: httpx and websockets are slow to load and the other commands need neither.
    from atopos.mixnet.exit_process import serve_exit
    from atopos.mixnet.node_process import parse_authority

    settings = ClientSettings(send_rate=send_rate, mean_delay_ms=mean_delay_ms)
    asyncio.run(
        serve_exit(
            topology_path=topology,
            authority=parse_authority(authority),
            key_path=key_file,
            upstream=upstream,
            settings=settings,
            clock=SystemClock(),
            random_bytes=system_random_bytes,
            announce=lambda line: print(line, file=sys.stderr, flush=True),
        )
    )


@app.command()
def keygen(
    key_file: KeyFile,
    key_epoch: Annotated[
        int, typer.Option("--key-epoch", min=0, max=2**32 - 1, metavar="N", help="Key epoch.")
    ] = 0,
) -> None:
    """Make a node key in a new file (0600) and print its public key for the topology."""
    try:
        key = write_node_key(key_file, key_epoch, system_random_bytes)
    except FileExistsError:
        raise InvalidInput("The key file exists already; it is never overwritten.") from None
    print(b64url_encode(key.public_key().public_bytes_raw()))
