"""`atopos serve`: run the server with settings from flags, then ATOPOS_* variables."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from atopos.errors import InvalidInput

__all__ = ["serve"]


def serve(
    host: Annotated[
        str | None,
        typer.Option(metavar="ADDRESS", help="Address to listen on (default: 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, metavar="PORT", help="Port to listen on (default: 8080)."),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            file_okay=False,
            metavar="DIR",
            help="Data directory (SQLite database). Env: ATOPOS_DATA; default: ./data.",
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            metavar="URL",
            help="sqlite:///path, redis://... or redis+cluster://... Env: ATOPOS_STORAGE; "
            "default: SQLite in --data.",
        ),
    ] = None,
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            dir_okay=False,
            metavar="FILE",
            help="Signing key shared by all nodes (mode 0600; see docs/storage-redis.md). "
            "Env: ATOPOS_KEY_FILE; default: a random key in RAM.",
        ),
    ] = None,
    pow_bits: Annotated[
        int | None,
        typer.Option(
            "--pow-bits",
            min=0,
            max=40,
            metavar="N",
            help="Base proof-of-work difficulty; 0 for tests only. Env: ATOPOS_POW_BITS.",
        ),
    ] = None,
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            envvar="ATOPOS_LOG_FORMAT",
            metavar="FORMAT",
            help="auto (short lines on a terminal, JSON lines otherwise), human or json. "
            "Env: ATOPOS_LOG_FORMAT.",
        ),
    ] = "auto",
) -> None:
    """Run the Atopos server (secrets API and web pages).

    Rate-limit counters (env ATOPOS_RATE_LIMIT, per minute; 0 turns limits off) are keyed by
    client identifiers that must never reach a disk. With Redis storage, point
    ATOPOS_RATE_LIMIT_STORAGE at a Redis without persistence
    (deploy/redis/atopos-ephemeral.conf) or set it to memory:// for per-node limits: the
    server refuses to start when the counters would go to a Redis that persists (AOF or
    snapshots), such as the durable Redis of the storage itself.
    ATOPOS_RATE_LIMIT_STORAGE_PERSISTENT_OK=1 skips that check. Every setting:
    docs/operations.md.
    """
    # Imported here: uvicorn and the app are heavy and only this command needs them.
    from atopos.server.config import ServerConfig
    from atopos.server.logs import LOG_FORMATS, resolve_log_format
    from atopos.server.runner import serve as run_server

    if log_format not in LOG_FORMATS:
        raise InvalidInput("--log-format must be auto, human or json.")

    config = ServerConfig.from_env(
        host=host,
        port=port,
        data_dir=data,
        storage_url=storage,
        key_file=key_file,
        pow_bits=pow_bits,
    )
    # Logs go to stderr: its being a terminal decides the format of `auto`.
    run_server(config, log_format=resolve_log_format(log_format, sys.stderr))
