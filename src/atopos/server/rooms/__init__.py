"""Rooms on a node: creation, the RAM-only relay over WebSockets, the room bus."""

from __future__ import annotations

from atopos.server.rooms.mount import RoomsProduct

__all__ = ["RoomsProduct"]
