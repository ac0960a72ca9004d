"""The room creation routes: a challenge bound to the new room's id, then the upload.

`POST /api/v1/rooms/{room_id}/challenge` answers `{challenge, bits, expires_at}` (the access
path's machinery, purpose "room creation"); `POST /api/v1/rooms` takes the `RoomCreation`
body plus `challenge` and `nonce` and answers `201 {"expires_at"}` (docs/protocol/rooms.md
section 3). Nothing of the body is logged.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from atopos.crypto.base64url import b64url_decode
from atopos.crypto.tokens import Purpose, ticket_id_for
from atopos.errors import InvalidInput
from atopos.protocol.room_creation import RoomCreation
from atopos.server.bodies import read_json
from atopos.server.errors import error_response
from atopos.server.node import Node
from atopos.server.rooms.registry import RoomIdTaken
from atopos.server.rooms.relays import RoomRelays

__all__ = ["RoomCreationApi", "RoomCreationBody"]

_JSON = "application/json"
_ROOM_ID_CHARS = 22


class RoomCreationBody(RoomCreation, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What `POST /api/v1/rooms` takes: the creation record and the paid proof of work."""

    challenge: str
    nonce: int


class _ChallengeAnswer(msgspec.Struct, frozen=True):
    challenge: str
    bits: int
    expires_at: int


class _CreatedAnswer(msgspec.Struct, frozen=True):
    expires_at: int


_encode = msgspec.json.encode
_CREATION_FIELDS = RoomCreation.__struct_fields__


class RoomCreationApi:
    def __init__(self, node: Node, registry: RoomRelays) -> None:
        self._node = node
        self._registry = registry

    async def challenge(self, request: Request) -> Response:
        ident = await self._node.admit(request.scope, "challenge")
        room_id = _room_id(request.path_params["room_id"])
        issued = await self._node.access.challenge_for(
            Purpose.ROOM_CREATION, room_id, ident, self._node.now()
        )
        answer = _ChallengeAnswer(issued.challenge, issued.bits, issued.expires_at)
        return Response(_encode(answer), media_type=_JSON)

    async def create(self, request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != _JSON:
            raise InvalidInput(f"The body must be {_JSON}.")
        ident = await self._node.admit(request.scope, "create")
        body = await read_json(request, RoomCreationBody, self._registry.limits.creation_body_bytes)
        if not 0 <= body.nonce < 1 << 64:
            raise InvalidInput("The nonce is out of range.")
        now = self._node.now()
        room_id = b64url_decode(body.room_id)
        expires_at = await self._node.access.check_work(
            Purpose.ROOM_CREATION, room_id, body.challenge, body.nonce, ident, now
        )
        creation = RoomCreation(**{name: getattr(body, name) for name in _CREATION_FIELDS})
        if await self._registry.has_room(body.room_id):
            return error_response(409, "conflict", "That room id is in use; draw another.")
        await self._registry.spend_challenge(ticket_id_for(body.challenge), expires_at, now)
        try:
            room = await self._registry.create(creation, ident, now)
        except RoomIdTaken as taken:
            return error_response(409, "conflict", taken.message)
        return Response(_encode(_CreatedAnswer(room.expires_at)), status_code=201, media_type=_JSON)


def _room_id(text: str) -> bytes:
    try:
        raw = b64url_decode(text) if len(text) == _ROOM_ID_CHARS else b""
    except ValueError:
        raw = b""
    if len(raw) != 16:
        raise InvalidInput("A room id is 16 bytes in base64url (22 characters).")
    return raw
