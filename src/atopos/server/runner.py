"""Run the server on uvicorn (`atopos serve`)."""

from __future__ import annotations

import logging
import os

import uvicorn
from starlette.types import ASGIApp

from atopos.server.app import create_app
from atopos.server.config import ServerConfig
from atopos.server.logs import configure_logging

__all__ = ["serve", "uvicorn_config"]


def serve(config: ServerConfig) -> None:
    configure_logging(config.log_level)
    if config.storage_url is None:
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(config.data_dir, 0o700)
    # Built first: a bad key file or storage URL stops the start with one sentence, before
    # anything is logged.
    app = create_app(config)
    logging.getLogger("atopos.server").info(
        "starting", extra={"storage": config.resolved_storage_url().split(":", 1)[0]}
    )
    uvicorn.Server(uvicorn_config(app, config.host, config.port)).run()


def uvicorn_config(app: ASGIApp, host: str, port: int) -> uvicorn.Config:
    """How Atopos runs on uvicorn (the tests' in-process servers use it too)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="auto",
        http="auto",
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )
