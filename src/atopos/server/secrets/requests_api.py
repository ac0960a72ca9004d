"""Endpoints of secret requests under /api/v1/requests (docs/protocol/requests.md).

A requester opens a request bound to its device; whoever holds the request link fills it
once with an envelope sealed to that device, which becomes an ordinary device-bound secret
(one view) that only the requester's device can take and open; the requester polls the
request's status to learn that it arrived, or cancels it while no fill holds it. Requests
are priced like creates (the `create` rate limit, the upload budget and the storage quota
for a fill).
"""

from __future__ import annotations

import asyncio
import hmac

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.crypto.device import is_valid_ed25519_public_key
from atopos.crypto.request_keys import FILL_TOKEN_BYTES, fill_token_hash
from atopos.crypto.sizes import MANAGE_TOKEN_BYTES, SECRET_ID_BYTES, SECRET_ID_CHARS
from atopos.errors import Gone, InvalidInput, Refused
from atopos.server.bodies import declared_length, limited_stream, read_json
from atopos.server.errors import error_response
from atopos.server.identity import ClientId
from atopos.server.node import Node
from atopos.server.secrets.manage_tokens import hash_manage_token
from atopos.server.secrets.quota import StorageQuota
from atopos.server.secrets.request_schemas import (
    NewRequestBody,
    RequestCreated,
    RequestFilled,
    RequestStatus,
)
from atopos.server.secrets.sizes import max_envelope_bytes
from atopos.server.secrets.uploads import checked_envelope, read_header
from atopos.storage.port import KIND_FILE, KIND_TEXT, NewSecret
from atopos.storage.request_port import (
    REQUEST_GONE_MESSAGE,
    NewRequest,
    RequestInfo,
    RequestState,
    SecretAndRequestStore,
)

__all__ = ["RequestsApi"]

_ENVELOPE = "application/octet-stream"
_JSON = "application/json"
_FILL_PARAMS = frozenset({"kind"})
_NOT_CANCELLED = (
    "This request is being filled or was filled, so it can no longer be cancelled; "
    "a filled secret is deleted with the pickup link's token like any secret."
)


def _json(payload: msgspec.Struct, status: int = 200) -> Response:
    return Response(msgspec.json.encode(payload), status_code=status, media_type=_JSON)


class RequestsApi:
    def __init__(self, node: Node, store: SecretAndRequestStore) -> None:
        self._node = node
        self._config = node.config
        self._store = store
        self._max_envelope = max_envelope_bytes(node.config.max_content_bytes)
        self._quota = StorageQuota(
            store, node.limits, node.clock, total_bytes=node.config.storage_quota_bytes
        )

    async def _admitted(self, request: Request, route: str, body_type: str | None) -> ClientId:
        # The media type first: a no-cors request from another page cannot send these, so it
        # is refused before it counts (as for secrets).
        if body_type is not None and _media_type(request) != body_type:
            raise InvalidInput(f"The body must be {body_type}.")
        return await self._node.admit(request.scope, route)

    async def create(self, request: Request) -> Response:
        await self._admitted(request, "create", _JSON)
        if request.query_params:
            raise InvalidInput("A new request takes no query parameters; send them as JSON.")
        body = await read_json(request, NewRequestBody, self._config.max_json_bytes)
        config = self._config
        expires_in = config.default_ttl if body.expires_in is None else body.expires_in
        if not 60 <= expires_in <= config.max_ttl:
            raise InvalidInput(f"expires_in must be between 60 and {config.max_ttl} seconds.")
        device_key = _ed25519_key(body.device_key, "device_key")
        access_key = _ed25519_key(body.access_key, "access_key")
        fill_token = _token(body.fill_token, FILL_TOKEN_BYTES)
        if fill_token is None:
            raise InvalidInput("fill_token must be 32 bytes as unpadded base64url.")
        now = self._node.now()
        request_id = self._node.random_bytes(SECRET_ID_BYTES)
        request_token = self._node.random_bytes(MANAGE_TOKEN_BYTES)
        await self._store.create_request(
            NewRequest(
                request_id=request_id,
                token_hash=hash_manage_token(request_token),
                fill_token_hash=fill_token_hash(fill_token),
                device_key=device_key,
                access_key=access_key,
                created_at=now,
                expires_at=now + expires_in,
                secret_lifetime=expires_in,
            )
        )
        created = RequestCreated(
            b64url_encode(request_id), b64url_encode(request_token), now + expires_in
        )
        return _json(created, status=201)

    async def status(self, request: Request) -> Response:
        await self._admitted(request, "manage", None)
        now = self._node.now()
        info = await self._request(request, now)
        self._check_request_token(request, info)
        state = info.state
        if state is RequestState.FILLING and await self._settled(info, now):
            state = RequestState.FILLED
        elif info.claim_lapsed(now):
            # Its node died before the secret was stored: a new fill may take it.
            state = RequestState.OPEN
        secret_id = info.secret_id if state is RequestState.FILLED else None
        return _json(
            RequestStatus(
                state=state.value,
                expires_at=info.expires_at,
                created_at=info.created_at,
                secret_id=None if secret_id is None else b64url_encode(secret_id),
            )
        )

    async def cancel(self, request: Request) -> Response:
        """Close the request unfilled (the requester's token): 204, or 409 when a fill holds it
        or filled it. The storage's cancel and claim exclude each other, so a fill racing a
        cancel either is refused (404) or wins and the cancel answers 409."""
        await self._admitted(request, "manage", None)
        if request.query_params:
            raise InvalidInput("Cancelling a request takes no query parameters.")
        now = self._node.now()
        info = await self._request(request, now)
        self._check_request_token(request, info)
        # A lapsed claim whose secret was stored is a fill: settle it rather than cancel.
        if info.claim_lapsed(now) and await self._settled(info, now):
            return error_response(409, "conflict", _NOT_CANCELLED)
        if not await self._store.cancel_request(info.request_id, now):
            if await self._store.request_info(info.request_id, now) is None:
                raise Gone(REQUEST_GONE_MESSAGE)
            return error_response(409, "conflict", _NOT_CANCELLED)
        return Response(status_code=204)

    def _check_request_token(self, request: Request, info: RequestInfo) -> None:
        token = _bearer(request, MANAGE_TOKEN_BYTES)
        if token is None or not hmac.compare_digest(hash_manage_token(token), info.token_hash):
            raise Refused("The request token is missing or wrong.")

    async def fill(self, request: Request) -> Response:
        client = await self._admitted(request, "create", _ENVELOPE)
        kind = self._fill_kind(request)
        now = self._node.now()
        info = await self._request(request, now)
        token = _bearer(request, FILL_TOKEN_BYTES)
        if token is None or not hmac.compare_digest(fill_token_hash(token), info.fill_token_hash):
            raise Refused("The request link is damaged: its fill token is missing or wrong.")
        if info.state is RequestState.FILLING and (
            not info.claim_lapsed(now) or await self._settled(info, now)
        ):
            raise Gone(REQUEST_GONE_MESSAGE)
        if info.state is RequestState.FILLED:
            raise Gone(REQUEST_GONE_MESSAGE)
        declared = declared_length(request, self._max_envelope)
        await self._quota.admit(client, declared)
        stream = limited_stream(request, self._max_envelope)
        header, head = await read_header(stream)
        if not header.is_device_bound or header.has_passphrase:
            raise InvalidInput(
                "A request is filled with an envelope sealed to the requester's device, "
                "without a passphrase."
            )
        secret_id = self._node.random_bytes(SECRET_ID_BYTES)
        # The one atomic step that decides who fills the request; a second filler stops here.
        await self._store.claim_request(info.request_id, secret_id, now)
        expires_at = now + info.secret_lifetime
        secret = NewSecret(
            secret_id=secret_id,
            # The requester's token manages the filled secret too (status, delete).
            manage_token_hash=info.token_hash,
            kind=kind,
            views=1,
            created_at=now,
            expires_at=expires_at,
            device_key=info.device_key,
            access_key=info.access_key,
        )
        try:
            size = await self._store.create(secret, checked_envelope(header, head, stream))
        except BaseException:
            # The upload failed (cut off, not an envelope, storage down): open the request
            # again for another try. Shielded: the handler may be cancelled.
            await asyncio.shield(self._store.release_request(info.request_id, secret_id))
            raise
        # At the time the upload ended, not began: the request may have expired meanwhile.
        completed_at = self._node.now()
        if not await self._store.complete_request(
            info.request_id, secret_id, expires_at, completed_at
        ):
            # The request expired during the upload, or this claim lapsed and another fill
            # took it: that one is the answer, so this secret must not linger unseen.
            await asyncio.shield(self._store.delete(secret_id))
            raise Gone(REQUEST_GONE_MESSAGE)
        if declared is None:
            await self._quota.charge_undeclared(client, size)
        return _json(RequestFilled(expires_at), status=201)

    async def _settled(self, info: RequestInfo, now: int) -> bool:
        """Whether the claimed secret was stored (a node that died after the upload but
        before it completed the request); if so, complete the request for it now."""
        if info.secret_id is None:
            return False
        secret = await self._store.info(info.secret_id, now)
        if secret is None:
            return False
        await self._store.complete_request(info.request_id, info.secret_id, secret.expires_at, now)
        return True

    async def _request(self, request: Request, now: int) -> RequestInfo:
        text = request.path_params["id"]
        try:
            request_id = b64url_decode(text) if len(text) == SECRET_ID_CHARS else b""
        except ValueError:
            request_id = b""
        info = await self._store.request_info(request_id, now) if request_id else None
        if info is None:
            raise Gone(REQUEST_GONE_MESSAGE)
        return info

    @staticmethod
    def _fill_kind(request: Request) -> str:
        params = request.query_params
        if set(params.keys()) - _FILL_PARAMS or len(params.getlist("kind")) > 1:
            raise InvalidInput("Only kind may be given, once.")
        kind = params.get("kind", KIND_TEXT)
        if kind not in (KIND_TEXT, KIND_FILE):
            raise InvalidInput("kind must be text or file.")
        return kind


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _token(text: str, size: int) -> bytes | None:
    try:
        value = b64url_decode(text)
    except ValueError:
        return None
    return value if len(value) == size else None


def _bearer(request: Request, size: int) -> bytes | None:
    scheme, _, text = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return _token(text.strip(), size)


def _ed25519_key(text: str, name: str) -> bytes:
    key = _token(text, 32)
    if key is None or not is_valid_ed25519_public_key(key):
        raise InvalidInput(f"{name} must be an Ed25519 public key as unpadded base64url.")
    return key
