"""The response that streams a revealed envelope and always lets go of its source."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

__all__ = ["EnvelopeStream"]


class EnvelopeStream(Response):
    """Streams `chunks` and closes them however the response ends.

    Starlette's StreamingResponse leaves an abandoned generator to the garbage collector
    when the client goes away; a storage read snapshot must not wait that long.
    """

    media_type = "application/octet-stream"

    def __init__(self, size: int, chunks: AsyncIterator[bytes]) -> None:
        super().__init__(status_code=200, headers={"content-length": str(size)})
        self._chunks = chunks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            async for piece in self._chunks:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            aclose = getattr(self._chunks, "aclose", None)
            if aclose is not None:
                await aclose()
