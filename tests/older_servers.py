"""Test-only ASGI wrappers that make a real Atopos app answer the one-shot ticket step
(`"reveal": true`, docs/protocol/access.md "One shot") the way servers without it do, so
the clients' fallback is tested against a real server, its storage and its crypto.

`RefusingOlderServer` answers a ticket request that carries `reveal` with the 422 a server
from before the one-shot step gave (its strict schema refused the unknown field, before any
check); every other request reaches the app. `IgnoringOlderServer` strips `reveal` from the
ticket request, so the app answers with a ticket as a server that ignores unknown fields
would. `StamplessServer` answers a ticket request that carries `stamp`
(docs/protocol/access.md, "Stamp: a reveal in one request") with the 422 a server from
before stamps gives, and takes the one-shot step. `RecordingServer` changes nothing. All
record each request's last path segment under /api/v1/secrets/ in `steps` (`challenge`,
`ticket`, `reveal`, ...), in order.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["IgnoringOlderServer", "RecordingServer", "RefusingOlderServer", "StamplessServer"]

_UNKNOWN_FIELD = {"error": "invalid_input", "message": "Object contains unknown field `reveal`"}
_UNKNOWN_STAMP = {"error": "invalid_input", "message": "Object contains unknown field `stamp`"}


class RecordingServer:
    """Records the steps and changes nothing: a current server, for comparison. Pass
    `around` as `in_process_server`'s `wrap`."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None
        self.steps: list[str] = []

    def around(self, app: ASGIApp) -> ASGIApp:
        self.app = app
        return self

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None, "around() was not called"
        await self.app(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/api/v1/secrets/"):
            await self._app(scope, receive, send)
            return
        self.steps.append(path.rsplit("/", 1)[-1])
        if not path.endswith("/ticket"):
            await self._app(scope, receive, send)
            return
        body = await _read_body(receive)
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        if not isinstance(request, dict) or "reveal" not in request:
            await self._app(scope, _replay(body, receive), send)
            return
        await self.ticket_with_reveal(scope, body, request, receive, send)

    async def ticket_with_reveal(
        self, scope: Scope, body: bytes, request: dict[str, object], receive: Receive, send: Send
    ) -> None:
        await self._app(scope, _replay(body, receive), send)


class RefusingOlderServer(RecordingServer):
    """A server from before the one-shot step: `reveal` is an unknown field (422)."""

    async def ticket_with_reveal(
        self, scope: Scope, body: bytes, request: dict[str, object], receive: Receive, send: Send
    ) -> None:
        await _unprocessable(send, _UNKNOWN_FIELD)


class StamplessServer(RecordingServer):
    """A server with the one-shot step but from before stamps: `stamp` is an unknown field
    (422, before any check: nothing spent)."""

    async def ticket_with_reveal(
        self, scope: Scope, body: bytes, request: dict[str, object], receive: Receive, send: Send
    ) -> None:
        if "stamp" in request:
            await _unprocessable(send, _UNKNOWN_STAMP)
            return
        await self._app(scope, _replay(body, receive), send)


async def _unprocessable(send: Send, error: dict[str, str]) -> None:
    refusal = json.dumps(error).encode()
    length = b"%d" % len(refusal)
    headers = [(b"content-type", b"application/json"), (b"content-length", length)]
    await send({"type": "http.response.start", "status": 422, "headers": headers})
    await send({"type": "http.response.body", "body": refusal})


class IgnoringOlderServer(RecordingServer):
    """A server that ignores the unknown `reveal` and answers with a ticket."""

    async def ticket_with_reveal(
        self, scope: Scope, body: bytes, request: dict[str, object], receive: Receive, send: Send
    ) -> None:
        del request["reveal"]
        stripped = json.dumps(request).encode()
        headers = [
            (name, value) for name, value in scope["headers"] if name.lower() != b"content-length"
        ]
        headers.append((b"content-length", b"%d" % len(stripped)))
        await self._app({**scope, "headers": headers}, _replay(stripped, receive), send)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """`body` as the request's one message, then the connection's own messages."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
