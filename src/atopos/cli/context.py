"""Options given before the command (`atopos --server URL secret create`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

__all__ = ["DEFAULT_SERVER", "GlobalOptions", "global_options"]

DEFAULT_SERVER = "http://127.0.0.1:8080"


@dataclasses.dataclass(frozen=True, slots=True)
class GlobalOptions:
    server: str = DEFAULT_SERVER
    # TLS for every server a command talks to (client/http.py puts them in force).
    ca_file: Path | None = None
    pin_spki: tuple[bytes, ...] = ()


def global_options(ctx: typer.Context) -> GlobalOptions:
    """The options the root callback stored; defaults when a command runs on its own."""
    options = ctx.find_root().obj
    return options if isinstance(options, GlobalOptions) else GlobalOptions()
