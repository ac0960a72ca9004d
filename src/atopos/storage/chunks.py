"""How both adapters cut a secret's body: inline up to one chunk, else fixed-size chunks,
so that no stored value is larger than CHUNK_BYTES and a large body is never held whole."""

from __future__ import annotations

from collections.abc import AsyncIterator

__all__ = ["CHUNK_BYTES", "fixed_chunks", "once", "read_head"]

CHUNK_BYTES = 1024 * 1024


async def read_head(body: AsyncIterator[bytes]) -> tuple[bytearray, bool]:
    """Read until the body ends or passes one chunk: (what was read, whether there is more
    than one chunk, in which case the rest of `body` is still unread)."""
    head = bytearray()
    async for piece in body:
        head += piece
        if len(head) > CHUNK_BYTES:
            return head, True
    return head, False


async def fixed_chunks(head: bytearray, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`head` then `rest`, re-cut into chunks of CHUNK_BYTES; the last one may be shorter."""
    pending = head
    while True:
        while len(pending) >= CHUNK_BYTES:
            yield bytes(pending[:CHUNK_BYTES])
            del pending[:CHUNK_BYTES]
        piece = await anext(rest, None)
        if piece is None:
            break
        pending += piece
    if pending:
        yield bytes(pending)


async def once(body: bytes | None) -> AsyncIterator[bytes]:
    """A body held whole, as the chunk stream a reveal returns (none for an empty body)."""
    if body:
        yield body
