"""What a product (secrets, rooms) brings to a node: its routes and its start/stop hooks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from starlette.routing import BaseRoute

__all__ = ["Product"]


class Product(Protocol):
    def routes(self) -> Sequence[BaseRoute]:
        """The product's HTTP and WebSocket routes, mounted on the node's one app."""
        ...

    async def start(self) -> None:
        """Called once before the node serves (open storage, start background tasks)."""
        ...

    async def stop(self) -> None:
        """Called once when the node stops, in the reverse order of starting."""
        ...

    async def check(self) -> None:
        """Raise Unavailable when the product cannot serve (for /healthz)."""
        ...
