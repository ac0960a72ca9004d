"""Endpoints of the secrets API under /api/v1 (routes fixed in DESIGN.md)."""

from __future__ import annotations

import hmac

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from atopos.crypto.access_proof import verify_access_proof, verify_stamp_proof
from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.crypto.device import is_valid_ed25519_public_key, verify_device_proof
from atopos.crypto.envelope import Header
from atopos.crypto.kdf import pack_argon2_fields, unpack_argon2_fields
from atopos.crypto.sizes import MANAGE_TOKEN_BYTES, SECRET_ID_BYTES, SECRET_ID_CHARS
from atopos.errors import AnswerTooLarge, Gone, InvalidInput, Refused, WrongKey
from atopos.server.access import StampRefused
from atopos.server.bodies import declared_length, limited_stream, read_json
from atopos.server.identity import ClientId
from atopos.server.node import Node
from atopos.server.secrets.manage_tokens import hash_manage_token
from atopos.server.secrets.quota import StorageQuota
from atopos.server.secrets.receipts import MAX_RECEIPT_WAIT_SECONDS, ReceiptWaiters
from atopos.server.secrets.schemas import (
    Argon2Fields,
    ChallengeResponse,
    CreateResponse,
    ReceiptsResponse,
    RevealRequest,
    StampRefusal,
    StampRefusedResponse,
    StatusResponse,
    TicketRequest,
    TicketResponse,
)
from atopos.server.secrets.sizes import max_envelope_bytes
from atopos.server.secrets.streaming import EnvelopeStream
from atopos.server.secrets.uploads import checked_envelope, read_header
from atopos.storage.port import (
    GONE_MESSAGE,
    KIND_FILE,
    KIND_TEXT,
    NewSecret,
    SecretInfo,
    SecretStore,
    TicketExpired,
    TicketUsed,
)

__all__ = ["SecretsApi"]

_ENVELOPE = "application/octet-stream"
_JSON = "application/json"
_CREATE_PARAMS = frozenset({"expires_in", "views", "kind", "device_key", "access_key"})
_RECEIPTS_PARAMS = frozenset({"seen", "wait"})
# More views than any server allows; a `seen` beyond it is a client's mistake.
_MAX_SEEN = 10_000
_encode = msgspec.json.encode
# Bodies up to this size are sent as one response (cheaper than a streaming response).
_BUFFERED_REVEAL_BYTES = 1024 * 1024


def _json(payload: msgspec.Struct, status: int = 200) -> Response:
    return Response(_encode(payload), status_code=status, media_type="application/json")


class SecretsApi:
    def __init__(self, node: Node, store: SecretStore) -> None:
        self._node = node
        self._config = node.config
        self._store = store
        self._access = node.access
        self._max_envelope = max_envelope_bytes(node.config.max_content_bytes)
        self._quota = StorageQuota(
            store, node.limits, node.clock, total_bytes=node.config.storage_quota_bytes
        )
        self._receipt_waiters = ReceiptWaiters(store, self._now)

    # -- helpers --------------------------------------------------------------------------

    def _now(self) -> int:
        return self._node.now()

    async def _limited(
        self, request: Request, route: str, body_type: str | None = None
    ) -> ClientId:
        """Admit a request (node.admit), after checking the body's media type: a no-cors
        request from another page can only send form and text types, so it is refused here
        before it spends anything."""
        if body_type is not None and _media_type(request) != body_type:
            raise InvalidInput(f"The body must be {body_type}.")
        return await self._node.admit(request.scope, route)

    @staticmethod
    def _secret_id(request: Request) -> bytes:
        text = request.path_params["id"]
        if len(text) != SECRET_ID_CHARS:
            raise Gone(GONE_MESSAGE)
        try:
            return b64url_decode(text)
        except ValueError:
            raise Gone(GONE_MESSAGE) from None

    async def _authorized(self, request: Request) -> SecretInfo:
        secret_id = self._secret_id(request)
        info = await self._store.info(secret_id, self._now())
        if info is None:
            raise Gone(GONE_MESSAGE)
        _check_manage_token(request, info.manage_token_hash)
        return info

    # -- endpoints ------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        client = await self._limited(request, "create", _ENVELOPE)
        expires_in, views, kind = self._create_params(request)
        device_key = _device_key_param(request.query_params.get("device_key"))
        access_key = _access_key_param(request.query_params.get("access_key"))
        declared = declared_length(request, self._max_envelope)
        await self._quota.admit(client, declared)
        stream = limited_stream(request, self._max_envelope)
        header, head = await read_header(stream)
        if header.is_device_bound != (device_key is not None):
            raise InvalidInput(
                "The envelope's device binding and the device_key parameter disagree."
            )
        now = self._now()
        secret_id = self._node.random_bytes(SECRET_ID_BYTES)
        manage_token = self._node.random_bytes(MANAGE_TOKEN_BYTES)
        secret = NewSecret(
            secret_id=secret_id,
            manage_token_hash=hash_manage_token(manage_token),
            kind=kind,
            views=views,
            created_at=now,
            expires_at=now + expires_in,
            device_key=device_key,
            has_passphrase=header.has_passphrase,
            access_key=access_key,
            kdf_fields=_kdf_fields(header),
        )
        size = await self._store.create(secret, checked_envelope(header, head, stream))
        if declared is None:
            await self._quota.charge_undeclared(client, size)
        return _json(
            CreateResponse(b64url_encode(secret_id), b64url_encode(manage_token), now + expires_in),
            status=201,
        )

    def _create_params(self, request: Request) -> tuple[int, int, str]:
        params = request.query_params
        unknown = set(params.keys()) - _CREATE_PARAMS
        if unknown or any(len(params.getlist(name)) > 1 for name in params):
            raise InvalidInput(
                "Only expires_in, views, kind, device_key and access_key may be given, once each."
            )
        config = self._config
        expires_in = _int_param(params.get("expires_in"), config.default_ttl, "expires_in")
        if not 60 <= expires_in <= config.max_ttl:
            raise InvalidInput(f"expires_in must be between 60 and {config.max_ttl} seconds.")
        views = _int_param(params.get("views"), 1, "views")
        if not 1 <= views <= config.max_views:
            raise InvalidInput(f"views must be between 1 and {config.max_views}.")
        kind = params.get("kind", KIND_TEXT)
        if kind not in (KIND_TEXT, KIND_FILE):
            raise InvalidInput("kind must be text or file.")
        return expires_in, views, kind

    async def challenge(self, request: Request) -> Response:
        ident = await self._limited(request, "challenge")
        secret_id = self._secret_id(request)
        now = self._now()
        info = await self._store.info(secret_id, now)
        if info is None:
            await self._access.record_failure(ident)
            raise Gone(GONE_MESSAGE)
        return _json(await self._challenge_answer(info, ident, now))

    async def _challenge_answer(
        self, info: SecretInfo, ident: ClientId, now: int
    ) -> ChallengeResponse:
        """A fresh challenge for `info`'s secret, with what the reader needs to know first."""
        issued = await self._access.challenge(info.secret_id, ident, now)
        return ChallengeResponse(
            issued.challenge,
            issued.bits,
            issued.expires_at,
            is_bound=info.is_bound,
            has_passphrase=info.has_passphrase,
            has_access_key=info.access_key is not None,
            argon2=_argon2_answer(info.kdf_fields),
        )

    async def ticket(self, request: Request) -> Response:
        ident = await self._limited(request, "ticket", _JSON)
        secret_id = self._secret_id(request)
        body = await read_json(request, TicketRequest, self._config.max_json_bytes)
        if body.stamp is not None:
            return await self._stamp_reveal(secret_id, body, body.stamp, ident)
        challenge = body.challenge
        if challenge is None:  # the schema wants exactly one of challenge and stamp
            raise InvalidInput("Exactly one of challenge and stamp is required.")
        now = self._now()
        issued = await self._access.ticket(secret_id, challenge, body.nonce, ident, now)
        info = await self._store.info(secret_id, now)
        if info is None:
            raise Gone(GONE_MESSAGE)
        # The key-knowledge proof: whoever lacks the link key (and the passphrase) is refused
        # here, before a view could be spent. The ticket minted above is then dropped.
        if info.access_key is not None and not (
            body.access_proof is not None
            and verify_access_proof(info.access_key, secret_id, challenge, body.access_proof)
        ):
            await self._access.record_failure(ident)
            raise WrongKey()
        # A bound secret's ticket also needs the device's signature over this challenge and
        # this secret id (docs/protocol/device.md); the ticket minted above is then dropped.
        if info.device_key is not None and not (
            body.device_proof is not None
            and verify_device_proof(info.device_key, secret_id, challenge, body.device_proof)
        ):
            await self._access.record_failure(ident)
            raise Refused("This secret is bound to a device; the device proof is missing or wrong.")
        if not body.reveal:
            return _json(TicketResponse(issued.ticket, issued.expires_at))
        _check_answer_fits(info, body.max_bytes)
        # Ticket and reveal in one request: the reveal step's budget is spent too, and the
        # view is taken exactly as the reveal step takes it (same ticket id, same store call).
        await self._node.limits.hit("reveal", ident)
        return await self._redeem(secret_id, issued.ticket_id, issued.remember_until, ident, now)

    async def _stamp_reveal(
        self, secret_id: bytes, body: TicketRequest, text: str, ident: ClientId
    ) -> Response:
        """The ticket step with a stamp instead of a challenge: the whole reveal in one
        request, or a challenge when the server cannot take the stamp as it is
        (docs/protocol/access.md, "Stamp: a reveal in one request", steps 1-7 in order)."""
        # It may answer as the challenge step, the ticket step or the reveal step: all three
        # budgets are spent (the ticket's was, on admission).
        limits = self._node.limits
        await limits.hit("challenge", ident)
        await limits.hit("reveal", ident)
        stamp = await self._access.open_stamp(secret_id, text, ident)
        now = self._now()
        info = await self._store.info(secret_id, now)
        if info is None:
            await self._access.record_failure(ident)
            raise Gone(GONE_MESSAGE)
        # Proofs the reader could not have made without a server challenge (the device proof
        # signs one) or without what the challenge tells (the passphrase's Argon2id cost).
        if info.access_key is None or info.has_passphrase or info.is_bound:
            return await self._stamp_refused(info, "access", ident, now)
        admitted = await self._access.stamp(stamp, text, body.nonce, ident, now)
        if isinstance(admitted, StampRefused):
            return await self._stamp_refused(info, admitted.reason, ident, now)
        if not (
            body.access_proof is not None
            and verify_stamp_proof(info.access_key, secret_id, text, body.access_proof)
        ):
            await self._access.record_failure(ident)
            raise WrongKey()
        _check_answer_fits(info, body.max_bytes)
        ticket_id, remember_until = admitted.ticket_id, admitted.remember_until
        return await self._redeem(secret_id, ticket_id, remember_until, ident, now)

    async def _stamp_refused(
        self, info: SecretInfo, reason: StampRefusal, ident: ClientId, now: int
    ) -> Response:
        """The challenge step's answer, and why the stamp was not taken: nothing is spent,
        no failure counted; the reader goes on with the ticket step."""
        answer = await self._challenge_answer(info, ident, now)
        return _json(StampRefusedResponse(**msgspec.structs.asdict(answer), stamp_refused=reason))

    async def reveal(self, request: Request) -> Response:
        ident = await self._limited(request, "reveal", _JSON)
        secret_id = self._secret_id(request)
        body = await read_json(request, RevealRequest, self._config.max_json_bytes)
        now = self._now()
        ticket = await self._access.open_ticket(secret_id, body.ticket, ident, now)
        if body.max_bytes is not None:
            # Only then a look at the size first: an ordinary reveal costs no extra round trip.
            info = await self._store.info(secret_id, now)
            if info is None:
                raise Gone(GONE_MESSAGE)
            _check_answer_fits(info, body.max_bytes)
        return await self._redeem(secret_id, ticket.ticket_id, ticket.remember_until, ident, now)

    async def _redeem(
        self, secret_id: bytes, ticket_id: bytes, remember_until: int, ident: ClientId, now: int
    ) -> Response:
        """Spend one view for a ticket id; the envelope as the answer."""
        # Every ticket minted from one challenge carries this ticket id: the store remembers
        # it until the last of them has expired, or a later one would buy a second view.
        try:
            revealed = await self._store.consume(secret_id, ticket_id, remember_until, now)
        except TicketUsed:
            await self._access.record_failure(ident)
            raise
        except TicketExpired as expired:
            # Expired by the store's sweep floor (a sweep since `now`, maybe another
            # worker's): decide no earlier from now on, and answer as for an expired ticket.
            self._node.decision_time.raise_floor(expired.sweep_floor)
            await self._access.record_failure(ident)
            raise
        headers = {"content-length": str(revealed.size)}
        if revealed.size <= _BUFFERED_REVEAL_BYTES:
            data = b"".join([piece async for piece in revealed.chunks])
            return Response(data, media_type="application/octet-stream", headers=headers)
        return EnvelopeStream(revealed.size, revealed.chunks)

    async def status(self, request: Request) -> Response:
        await self._limited(request, "manage")
        info = await self._authorized(request)
        return _json(
            StatusResponse(
                views_left=info.views_left,
                expires_at=info.expires_at,
                created_at=info.created_at,
                kind="file" if info.kind == KIND_FILE else "text",
                size=info.size,
                is_bound=info.is_bound,
                viewed_at=list(await self._viewed_at(info.secret_id)),
            )
        )

    async def _viewed_at(self, secret_id: bytes) -> tuple[int, ...]:
        receipts = await self._store.receipts(secret_id, self._now())
        return () if receipts is None else receipts.viewed_at

    async def receipts(self, request: Request) -> Response:
        """The reveal receipts, also after the last view; with `wait`, a long poll that
        answers once more than `seen` views were spent (or the wait is over)."""
        await self._limited(request, "manage")
        secret_id = self._secret_id(request)
        seen, wait = self._receipts_params(request)
        receipts = await self._store.receipts(secret_id, self._now())
        if receipts is None:
            raise Gone(GONE_MESSAGE)
        _check_manage_token(request, receipts.manage_token_hash)
        latest = await self._receipt_waiters.wait(
            secret_id, receipts, seen=seen, wait=wait, disconnected=request.is_disconnected
        )
        if latest is None:
            raise Gone(GONE_MESSAGE)
        info = await self._store.info(secret_id, self._now())
        return _json(
            ReceiptsResponse(
                views_left=0 if info is None else info.views_left,
                expires_at=latest.expires_at,
                viewed_at=list(latest.viewed_at),
            )
        )

    @staticmethod
    def _receipts_params(request: Request) -> tuple[int, int]:
        params = request.query_params
        if set(params.keys()) - _RECEIPTS_PARAMS or any(
            len(params.getlist(name)) > 1 for name in params
        ):
            raise InvalidInput("Only seen and wait may be given, once each.")
        seen = _int_param(params.get("seen"), 0, "seen")
        wait = _int_param(params.get("wait"), 0, "wait")
        if seen > _MAX_SEEN or wait > MAX_RECEIPT_WAIT_SECONDS:
            raise InvalidInput(
                f"seen must be at most {_MAX_SEEN} and wait at most "
                f"{MAX_RECEIPT_WAIT_SECONDS} seconds."
            )
        return seen, wait

    async def delete(self, request: Request) -> Response:
        await self._limited(request, "manage")
        info = await self._authorized(request)
        if not await self._store.delete(info.secret_id):
            raise Gone(GONE_MESSAGE)
        return Response(status_code=204)


def _check_answer_fits(info: SecretInfo, max_bytes: int | None) -> None:
    """Refuse, before the view is spent, an envelope larger than the reader can take (a
    mixnet's reply blocks): spent and then dropped on the way, it would be lost."""
    if max_bytes is not None and info.size > max_bytes:
        raise AnswerTooLarge(
            f"The envelope is {info.size} bytes, more than max_bytes ({max_bytes}); "
            "no view was spent.",
            info.size,
        )


def _check_manage_token(request: Request, manage_token_hash: bytes) -> None:
    scheme, _, token_text = request.headers.get("authorization", "").partition(" ")
    try:
        token = b64url_decode(token_text.strip())
    except ValueError:
        token = b""
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        hash_manage_token(token), manage_token_hash
    ):
        raise Refused("The manage token is missing or wrong.")


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _device_key_param(text: str | None) -> bytes | None:
    """The Ed25519 public key a secret is bound to (unpadded base64url of 32 bytes)."""
    if text is None:
        return None
    try:
        key = b64url_decode(text)
    except ValueError:
        key = b""
    if not is_valid_ed25519_public_key(key):
        raise InvalidInput("device_key must be an Ed25519 public key as unpadded base64url.")
    return key


def _access_key_param(text: str | None) -> bytes:
    """The secret's Ed25519 access key (unpadded base64url of 32 bytes); every new secret
    has one, so a client from before the key-knowledge proof is told plainly."""
    if text is None:
        raise InvalidInput(
            "access_key is missing: this client is too old for this server "
            "(every secret now needs a key-knowledge proof); please upgrade it."
        )
    try:
        key = b64url_decode(text)
    except ValueError:
        key = b""
    if not is_valid_ed25519_public_key(key):
        raise InvalidInput("access_key must be an Ed25519 public key as unpadded base64url.")
    return key


def _kdf_fields(header: Header) -> bytes | None:
    """The header's Argon2id cost and salt as stored (crypto/kdf.py ARGON2_FIELDS)."""
    if header.argon2 is None or header.argon2_salt is None:
        return None
    return pack_argon2_fields(header.argon2, header.argon2_salt)


def _argon2_answer(kdf_fields: bytes | None) -> Argon2Fields | None:
    if kdf_fields is None:
        return None
    params, salt = unpack_argon2_fields(kdf_fields, 0)
    return Argon2Fields(params.memory_kib, params.iterations, params.lanes, b64url_encode(salt))


def _int_param(text: str | None, default: int, name: str) -> int:
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise InvalidInput(f"{name} must be a whole number.")
    return int(text)
