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
    # --ca-file and --pin-spki act through client/http.py's TLS policy, which the root
    # callback puts in force; `atopos pin` also builds its own context from ca_file.
    ca_file: Path | None = None


def global_options(ctx: typer.Context) -> GlobalOptions:
    """The options the root callback stored; defaults when a command runs on its own."""
    options = ctx.find_root().obj
    return options if isinstance(options, GlobalOptions) else GlobalOptions()
