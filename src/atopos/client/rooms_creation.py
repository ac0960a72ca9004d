"""Creating a room: draw its secrets on this device, pay the proof of work, upload.

`create_room` runs `protocol.room_creation.make_room` (every secret drawn here, S_link never
leaves the device), asks the relay for a challenge bound to the room id, solves it and posts
the creation body with `challenge` and `nonce` (docs/protocol/rooms.md section 3; the route
shapes are in docs/cli.md, "Rooms"). A `room_id` already in use (409) is drawn again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TypeVar

import httpx
import msgspec

from atopos.client.failures import error_for
from atopos.client.transport import Transport
from atopos.crypto import pow as proof_of_work
from atopos.crypto.randomness import RandomBytes
from atopos.errors import NetworkError, Refused
from atopos.protocol.answers import ServerAnswer, failure_for_answer
from atopos.protocol.room_creation import DEFAULT_TTL_SECONDS, NewRoom, make_room

__all__ = ["MAX_ROOM_POW_BITS", "CreatedRoom", "create_room"]

# As for secrets: a server asking for more work than a minute of CPython is broken or hostile.
MAX_ROOM_POW_BITS = 26
_ATTEMPTS = 3
_T = TypeVar("_T")


class _ChallengeAnswer(msgspec.Struct, frozen=True):
    challenge: str
    bits: int


class _CreatedAnswer(msgspec.Struct, frozen=True):
    expires_at: int


@dataclass(frozen=True, slots=True)
class CreatedRoom:
    """The new room's links (printed once, kept nowhere) and when the relay will end it."""

    new: NewRoom
    expires_at: int


async def create_room(
    transport: Transport,
    random_bytes: RandomBytes,
    *,
    ttl: int = DEFAULT_TTL_SECONDS,
    knock: bool = False,
    invites: int = 0,
    invite_only: bool = False,
    name: str | None = None,
) -> CreatedRoom:
    """Make a room on `transport`'s server; Refused/Gone/NetworkError as the server says."""
    async with transport.async_http_client() as client:
        for _ in range(_ATTEMPTS):
            new = make_room(
                transport.server,
                random_bytes,
                ttl=ttl,
                knock=knock,
                invites=invites,
                invite_only=invite_only,
                name=name,
            )
            room_id = new.creation.room_id
            challenge = _decode(
                await _post(client, f"/api/v1/rooms/{room_id}/challenge", None),
                _ChallengeAnswer,
            )
            if not 0 <= challenge.bits <= MAX_ROOM_POW_BITS:
                raise Refused("The server asks for more proof of work than this client does.")
            nonce = await asyncio.to_thread(
                proof_of_work.solve, challenge.challenge.encode("utf-8"), challenge.bits
            )
            body = msgspec.to_builtins(new.creation)
            body |= {"challenge": challenge.challenge, "nonce": nonce}
            answer = await _post(client, "/api/v1/rooms", body)
            if answer.status == 409:
                continue  # that room id is taken: draw everything again
            return CreatedRoom(new=new, expires_at=_decode(answer, _CreatedAnswer).expires_at)
    raise NetworkError("The server refused every room id this client drew.")


async def _post(client: httpx.AsyncClient, path: str, body: object) -> ServerAnswer:
    try:
        response = await client.post(path, json=body)
    except httpx.TimeoutException:
        raise NetworkError("The server did not answer in time.") from None
    except httpx.HTTPError:
        raise NetworkError("Could not talk to the server.") from None
    answer = ServerAnswer(response.status_code, response.content[:65536])
    if answer.status == 409:
        return answer
    if not answer.is_success:
        raise error_for(
            failure_for_answer(answer, refused="The server refused to create the room.")
        )
    return answer


def _decode(answer: ServerAnswer, schema: type[_T]) -> _T:
    try:
        return msgspec.json.decode(answer.body or b"", type=schema)
    except msgspec.DecodeError:
        raise NetworkError("The server's answer was not understood.") from None
