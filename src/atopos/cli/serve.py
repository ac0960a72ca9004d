"""`atopos serve`: run the server with settings from flags, then ATOPOS_* variables."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from atopos.errors import InvalidInput

if TYPE_CHECKING:
    from atopos.server.onion_service import PublishedOnion

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
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            metavar="N",
            help="Worker processes sharing the port and the store, to use N cores; rate "
            "limits are shared in memory (or in ATOPOS_RATE_LIMIT_STORAGE's Redis); rooms "
            "need 1 or a room Redis (ATOPOS_ROOM_REDIS_URL); a write waits for the others' "
            "at most ATOPOS_WRITER_LOCK_WAIT seconds (5), then 503; on SQLite the workers run "
            "ATOPOS_WORKER_NICE (5) below the writer process. Env: ATOPOS_WORKERS; "
            "default: 1. docs/operations.md.",
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
    onion: Annotated[
        bool,
        typer.Option(
            "--onion",
            help="Also publish the server as a Tor onion service (starts tor, or attaches "
            "with --tor-control); prints its address. docs/tor.md.",
        ),
    ] = False,
    onion_only: Annotated[
        bool,
        typer.Option(
            "--onion-only",
            help="Publish the onion service and listen nowhere else (implies --onion).",
        ),
    ] = False,
    onion_key_file: Annotated[
        Path | None,
        typer.Option(
            "--onion-key-file",
            dir_okay=False,
            metavar="FILE",
            help="Keep the onion address across restarts: its key is read from FILE, or "
            "written there (mode 0600) on first use. Default: a new address each start.",
        ),
    ] = None,
    tor_control: Annotated[
        str | None,
        typer.Option(
            "--tor-control",
            envvar="ATOPOS_TOR_CONTROL",
            metavar="ADDRESS",
            help="Use the running tor at this control port (HOST:PORT, PORT or a socket "
            "path; password in ATOPOS_TOR_CONTROL_PASSWORD) instead of starting one.",
        ),
    ] = None,
    tor_config: Annotated[
        Path | None,
        typer.Option(
            "--tor-config",
            dir_okay=False,
            exists=True,
            metavar="FILE",
            help="torrc lines for the tor started for --onion (bridges, a private network).",
        ),
    ] = None,
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
    from atopos.server.onion_service import OnionOptions
    from atopos.server.runner import serve as run_server

    if log_format not in LOG_FORMATS:
        raise InvalidInput("--log-format must be auto, human or json.")
    is_onion = onion or onion_only
    if not is_onion and (onion_key_file or tor_config):
        raise InvalidInput("--onion-key-file and --tor-config need --onion.")
    if tor_control is not None and tor_config is not None:
        raise InvalidInput("--tor-config is for a tor started here; not with --tor-control.")

    config = ServerConfig.from_env(
        host=host,
        port=port,
        data_dir=data,
        storage_url=storage,
        key_file=key_file,
        pow_bits=pow_bits,
        workers=workers,
    )
    # Logs go to stderr: its being a terminal decides the format of `auto`.
    options = OnionOptions(control=tor_control, key_file=onion_key_file, tor_config=tor_config)
    run_server(
        config,
        log_format=resolve_log_format(log_format, sys.stderr),
        onion=options if is_onion else None,
        is_onion_only=onion_only,
        show_onion=_show_onion,
    )


def _show_onion(published: PublishedOnion) -> None:
    """The address on stdout (for scripts), and for a person on a terminal a QR code to
    open it with Tor Browser on a phone, on stderr."""
    url = f"http://{published.address}/"
    print(url, flush=True)
    if sys.stderr.isatty():
        import segno

        print(f"  onion service: {url}", file=sys.stderr)
        try:
            segno.make(url, error="m").terminal(out=sys.stderr, compact=True)
        except UnicodeEncodeError:  # a terminal without the half-block characters
            segno.make(url, error="m").terminal(out=sys.stderr)
        if not published.has_pow_defence:
            print(
                "  (this tor has no onion-service proof-of-work defence: tor 0.4.8+ has it)",
                file=sys.stderr,
            )
    sys.stderr.flush()
