"""Run the server on uvicorn (`atopos serve`)."""

from __future__ import annotations

import contextlib
import logging
import os
import resource

import uvicorn
from starlette.types import ASGIApp

from atopos.server.app import create_app
from atopos.server.config import ServerConfig
from atopos.server.connection_guard import ConnectionLimits, guarded_http_protocol
from atopos.server.logs import configure_logging

__all__ = ["serve", "uvicorn_config"]


def serve(config: ServerConfig) -> None:
    configure_logging(config.log_level)
    _raise_descriptor_limit()
    if config.storage_url is None:
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(config.data_dir, 0o700)
    # Built first: a bad key file or storage URL stops the start with one sentence, before
    # anything is logged.
    app = create_app(config)
    logging.getLogger("atopos.server").info(
        "starting", extra={"storage": config.resolved_storage_url().split(":", 1)[0]}
    )
    uvicorn.Server(uvicorn_config(app, config.host, config.port, config.connection_limits())).run()


def uvicorn_config(
    app: ASGIApp, host: str, port: int, limits: ConnectionLimits | None = None
) -> uvicorn.Config:
    """How Atopos runs on uvicorn (the tests' in-process servers use it too)."""
    limits = limits or ConnectionLimits()
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="auto",
        http=guarded_http_protocol(limits),
        timeout_keep_alive=int(limits.idle_timeout),
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )


def _raise_descriptor_limit() -> None:
    """Take the hard limit on open files as the soft one: every connection is a descriptor,
    and the connection guard's cap is lowered to what the soft limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        # Refused above the kernel's nr_open: the guard then caps at the soft limit.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
