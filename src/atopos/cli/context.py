"""Options given before the command (`atopos --server URL secret create`), and the one
`Transport` the commands build from them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from atopos.client.transport import Transport

__all__ = ["DEFAULT_SERVER", "GlobalOptions", "global_options"]

DEFAULT_SERVER = "http://127.0.0.1:8080"


@dataclasses.dataclass(frozen=True, slots=True)
class GlobalOptions:
    server: str = DEFAULT_SERVER
    ca_file: Path | None = None  # --ca-file; `atopos pin` also builds its own context from it
    pins: tuple[bytes, ...] = ()  # --pin-spki, parsed
    proxy: str | None = None  # no option sets it yet (the Tor issue's --tor will)

    def transport(self, server: str | None = None) -> Transport:
        """How to reach `server` (default --server): every command's connections, links'
        servers included, are checked against --ca-file and --pin-spki."""
        # Imported here: httpx and cryptography are slow to load and many runs need neither.
        from atopos.client.transport import TlsPolicy, Transport

        return Transport(
            server if server is not None else self.server,
            tls=TlsPolicy(ca_file=self.ca_file, pins=self.pins),
            proxy=self.proxy,
        )


def global_options(ctx: typer.Context) -> GlobalOptions:
    """The options the root callback stored; defaults when a command runs on its own."""
    options = ctx.find_root().obj
    return options if isinstance(options, GlobalOptions) else GlobalOptions()
