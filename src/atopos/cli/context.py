"""Options given before the command (`atopos --server URL secret create`), and the one
`Transport` the commands build from them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from atopos.errors import InvalidInput

if TYPE_CHECKING:
    from atopos.client.transport import Transport
    from atopos.clock import Clock
    from atopos.mixnet.http_transport import MixnetHttpTransport
    from atopos.mixnet.room_socket import MixnetWebSocketOpener
    from atopos.protocol.mix_topology import Topology

__all__ = [
    "DEFAULT_SERVER",
    "DEFAULT_TOR_PROXY",
    "ENV_TOR",
    "GlobalOptions",
    "global_options",
    "tor_proxy",
]

DEFAULT_SERVER = "http://127.0.0.1:8080"
# The SOCKS port of a tor daemon (Debian's `tor` package); Tor Browser's own is 9150.
DEFAULT_TOR_PROXY = "socks5h://127.0.0.1:9050"
ENV_TOR = "ATOPOS_TOR"


@dataclasses.dataclass(frozen=True, slots=True)
class GlobalOptions:
    server: str = DEFAULT_SERVER
    ca_file: Path | None = None  # --ca-file; `atopos pin` also builds its own context from it
    pins: tuple[bytes, ...] = ()  # --pin-spki, parsed
    proxy: str | None = None  # --tor (or ATOPOS_TOR): the Tor SOCKS proxy, socks5h://
    mixnet: Path | None = None  # --mixnet: the signed topology whose exit asks the server
    mix_authority: str | None = None  # --mix-authority: its authority's public key

    def transport(self, server: str | None = None) -> Transport:
        """How to reach `server` (default --server): every command's connections, links'
        servers included, are checked against --ca-file and --pin-spki."""
        # Imported here: httpx and cryptography are slow to load and many runs need neither.
        from atopos.client.transport import TlsPolicy, Transport

        mixnet_transport = self._mixnet_transport()
        return Transport(
            server if server is not None else self.server,
            tls=TlsPolicy(ca_file=self.ca_file, pins=self.pins),
            proxy=self.proxy,
            http_transport=mixnet_transport,
            async_http_transport=mixnet_transport,
            websocket_opener=self._mixnet_opener(),
            max_answer_bytes=mixnet_transport.max_body_bytes if mixnet_transport else None,
        )

    def _mixnet_opener(self) -> MixnetWebSocketOpener | None:
        """With --mixnet, what opens room WebSockets through the mixnet's exit."""
        if self.mixnet is None:
            return None
        from atopos.clock import SystemClock
        from atopos.mixnet.room_socket import MixnetWebSocketOpener
        from atopos.randomness import system_random_bytes

        clock = SystemClock()
        return MixnetWebSocketOpener(self._mixnet_topology(clock), clock, system_random_bytes)

    def _mixnet_topology(self, clock: Clock) -> Topology:
        from atopos.mixnet.node_process import load_topology, parse_authority

        assert self.mixnet is not None
        if not self.mix_authority:
            raise InvalidInput("--mixnet needs the topology authority's key: --mix-authority.")
        return load_topology(self.mixnet, parse_authority(self.mix_authority), clock)

    def _mixnet_transport(self) -> MixnetHttpTransport | None:
        """With --mixnet, the transport that carries every request through the mixnet."""
        if self.mixnet is None:
            return None
        from atopos.clock import SystemClock
        from atopos.mixnet.http_transport import MixnetHttpTransport
        from atopos.randomness import system_random_bytes

        clock = SystemClock()
        return MixnetHttpTransport(self._mixnet_topology(clock), clock, system_random_bytes)


def tor_proxy(*, is_requested: bool, environ: Mapping[str, str]) -> str | None:
    """The proxy `--tor` (or a non-empty ATOPOS_TOR) routes everything through, or None.

    Only socks5h:// is accepted: it has Tor resolve the server's name, so no DNS query
    leaves this machine and a .onion name works (socks5:// would resolve it here)."""
    configured = environ.get(ENV_TOR, "").strip()
    if not is_requested and not configured:
        return None
    proxy = configured or DEFAULT_TOR_PROXY
    if not proxy.lower().startswith("socks5h://"):
        raise InvalidInput(
            f"{ENV_TOR} must be a socks5h://host:port URL (Tor resolves names then), "
            "such as socks5h://127.0.0.1:9050."
        )
    return proxy


def global_options(ctx: typer.Context) -> GlobalOptions:
    """The options the root callback stored; defaults when a command runs on its own."""
    options = ctx.find_root().obj
    return options if isinstance(options, GlobalOptions) else GlobalOptions()
