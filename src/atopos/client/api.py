"""`SecretsApi` and `AsyncSecretsApi`: the secrets HTTP API (DESIGN.md) as typed calls
with Atopos errors, for sync code (the CLI) and for asyncio (room client, TUI).

Both carry out the same requests, built once: the access path's by `protocol/access_path.py`
(`send`, `open_reveal`), the others by the `_*_call` functions below. Answers are judged
once (`protocol/answers.py` maps statuses to failures, `client/failures.py` those to errors)
and decoded once; only the sending differs. Connection trouble becomes NetworkError. Error
sentences never contain a ticket, token or key.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Annotated, Any, Literal, TypeVar

import httpx
import msgspec

from atopos.client.answer_body import aiter_inflated, aread_bounded, iter_inflated, read_bounded
from atopos.client.failures import error_for
from atopos.client.links import is_manage_token, is_secret_id
from atopos.client.transport import Transport, Verify, build_http_client
from atopos.crypto.base64url import b64url_encode
from atopos.errors import InvalidInput, NetworkError, Refused
from atopos.protocol.access_path import Challenge, SendRequest, Ticket
from atopos.protocol.answers import ServerAnswer, failure_for_answer

__all__ = [
    "REQUEST_NOT_CANCELLED",
    "AsyncRevealedEnvelope",
    "AsyncSecretsApi",
    "Challenge",
    "CreatedRecord",
    "CreatedRequest",
    "Kind",
    "NewSecret",
    "RequestStatus",
    "RevealedEnvelope",
    "SecretReceipts",
    "SecretStatus",
    "SecretsApi",
    "Ticket",
]

Kind = Literal["text", "file"]
_T = TypeVar("_T")

_API = "/api/v1/secrets"
REQUEST_NOT_CANCELLED = (
    "This request is being filled or was filled, so it can no longer be cancelled; "
    "a filled secret is deleted with `atopos secret delete` like any other."
)
# JSON answers are a few hundred bytes; a hostile server must not make us buffer more.
_MAX_JSON_BYTES = 64 * 1024
# Numbers a server sends back are shown or printed as JSON: a hostile one could send an
# integer too long for Python to turn into text (over 4300 digits), or a date no clock knows.
_ServerNumber = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


@dataclasses.dataclass(frozen=True, slots=True)
class CreatedRecord:
    """The server's receipt for a stored envelope."""

    secret_id: str
    manage_token: str = dataclasses.field(repr=False)
    expires_at: int


# SecretStatus (like protocol/access_path.py's Challenge and Ticket) is also the schema the
# server's answer is decoded into: msgspec checks types and bounds, ignores unknown fields.


@dataclasses.dataclass(frozen=True, slots=True)
class SecretStatus:
    """What the manage token may learn about a secret; `size` is the stored envelope size."""

    views_left: _ServerNumber
    expires_at: _ServerNumber
    created_at: int
    kind: Kind
    size: _ServerNumber
    is_bound: bool = False
    viewed_at: tuple[_ServerNumber, ...] = ()  # servers before reveal receipts do not send it


@dataclasses.dataclass(frozen=True, slots=True)
class SecretReceipts:
    """The minute each view was spent (Unix seconds), also after the last view."""

    views_left: _ServerNumber
    expires_at: _ServerNumber
    viewed_at: tuple[_ServerNumber, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class RevealedEnvelope:
    """The envelope as it streams in; `size` is its Content-Length when the server sent one."""

    size: int | None
    chunks: Iterator[bytes]

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks


@dataclasses.dataclass(frozen=True, slots=True)
class AsyncRevealedEnvelope:
    """`RevealedEnvelope` for asyncio: iterate it with `async for`."""

    size: int | None
    chunks: AsyncIterator[bytes]

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.chunks


@dataclasses.dataclass(frozen=True, slots=True)
class NewSecret:
    """What the server is told about an envelope it is asked to store: `size` bytes, kept
    `expires_in` seconds for `views` views. The ticket step will demand a proof made with
    `access_key` (Ed25519, 32 bytes: docs/protocol/access.md), and with `device_key` (Ed25519,
    32 bytes) that device's proof too."""

    size: int
    expires_in: int
    views: int
    kind: Kind
    access_key: bytes
    device_key: bytes | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class _Call:
    """One request of the API and the sentence of the Refused error its 403 becomes."""

    method: str
    path: str
    refused: str
    params: dict[str, str] | None = None
    headers: dict[str, str] | None = None
    content: object = None
    json: object = None

    def stream_options(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "url": self.path,
            "params": self.params,
            "headers": self.headers,
            "content": self.content,
            "json": self.json,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class CreatedRequest:
    """The server's receipt for a new secret request (docs/protocol/requests.md)."""

    request_id: str
    request_token: str = dataclasses.field(repr=False)
    expires_at: int


@dataclasses.dataclass(frozen=True, slots=True)
class RequestStatus:
    """What the request token may learn about a request: `state` is open, filling or
    filled, and `secret_id` names the filled secret."""

    state: Literal["open", "filling", "filled"]
    expires_at: _ServerNumber
    created_at: int
    secret_id: str | None = None


class _RequestCreatedBody(msgspec.Struct, frozen=True):
    id: str
    request_token: str
    expires_at: _ServerNumber


class _RequestFilledBody(msgspec.Struct, frozen=True):
    expires_at: _ServerNumber


class _CreateBody(msgspec.Struct, frozen=True):
    id: str
    manage_token: str
    expires_at: _ServerNumber


class _ApiBase:
    """What the sync and the async client share: the server, and every request and answer
    except the sending."""

    def __init__(self, server: Transport | str) -> None:
        self.transport = server if isinstance(server, Transport) else Transport(server)
        self.server = self.transport.server

    def _answered(self, response: httpx.Response, body: bytes | None) -> ServerAnswer:
        if body is None:
            raise NetworkError(f"The server at {self.server} sent an oversized answer.")
        return _answer(response, body)

    def _read_answer(self, response: httpx.Response, body: bytes | None) -> ServerAnswer:
        """A read answer to a request that may reveal: an oversized success is refused (its
        body None would stand for the envelope); an oversized error is judged by status."""
        if response.is_success:
            return self._answered(response, body)
        return _answer(response, body)

    def _accepted(self, answer: ServerAnswer, call: _Call) -> bytes:
        if not answer.is_success:
            raise error_for(failure_for_answer(answer, refused=call.refused))
        assert answer.body is not None  # _answered let only read bodies through
        return answer.body

    def _created(self, body: bytes) -> CreatedRecord:
        created = self._decode(body, _CreateBody)
        if not is_secret_id(created.id) or not is_manage_token(created.manage_token):
            raise self._not_understood()
        return CreatedRecord(created.id, created.manage_token, created.expires_at)

    def _created_request(self, body: bytes) -> CreatedRequest:
        created = self._decode(body, _RequestCreatedBody)
        if not is_secret_id(created.id) or not is_manage_token(created.request_token):
            raise self._not_understood()
        return CreatedRequest(created.id, created.request_token, created.expires_at)

    def _request_status(self, body: bytes) -> RequestStatus:
        status = self._decode(body, RequestStatus)
        if status.secret_id is not None and not is_secret_id(status.secret_id):
            raise self._not_understood()
        return status

    def _cancelled(self, answer: ServerAnswer, call: _Call) -> None:
        # 409 is the one status only this route answers: a fill holds or filled the request.
        if answer.status == 409:
            raise Refused(REQUEST_NOT_CANCELLED)
        self._accepted(answer, call)

    def _decode(self, body: bytes, schema: type[_T]) -> _T:
        try:
            return msgspec.json.decode(body, type=schema)
        except (msgspec.DecodeError, RecursionError):  # nesting past the parser's depth
            raise self._not_understood() from None

    def _not_understood(self) -> NetworkError:
        return NetworkError(
            f"The server at {self.server} sent an answer Atopos does not understand."
        )

    @contextlib.contextmanager
    def _transport_errors(self) -> Iterator[None]:
        try:
            yield
        except httpx.TimeoutException as exc:
            raise NetworkError(f"The server at {self.server} did not answer in time.") from exc
        except httpx.ConnectError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise NetworkError(
                    f"The TLS certificate of {self.server} could not be verified."
                ) from exc
            raise NetworkError(f"Could not connect to the server at {self.server}.") from exc
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise NetworkError(f"The connection to the server at {self.server} failed.") from exc


class SecretsApi(_ApiBase):
    """Synchronous client of one Atopos server's secrets API; use it as a context manager.

    `server` is a `Transport` (server URL, TLS policy, proxy) or, for the defaults, a URL.
    """

    def __init__(self, server: Transport | str, *, verify: Verify = True) -> None:
        super().__init__(server)
        self._client = build_http_client(
            self.server,
            transport=self.transport.http_transport,
            verify=verify,
            timeout=self.transport.timeout,
            tls=self.transport.tls,
            proxy=self.transport.proxy,
        )

    def __enter__(self) -> SecretsApi:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def create(self, envelope: Iterable[bytes], secret: NewSecret) -> CreatedRecord:
        """Upload the envelope, streamed from `envelope`, as a new secret."""
        return self._created(self._call(_create_call(secret, envelope)))

    def status(self, secret_id: str, manage_token: str) -> SecretStatus:
        return self._decode(self._call(_status_call(secret_id, manage_token)), SecretStatus)

    def receipts(
        self, secret_id: str, manage_token: str, *, seen: int = 0, wait: int = 0
    ) -> SecretReceipts:
        """The reveal receipts; with `wait` (seconds, at most 15), answered once more than
        `seen` views were spent or the wait is over (docs/protocol/access.md)."""
        call = _receipts_call(secret_id, manage_token, seen=seen, wait=wait)
        return self._decode(self._call(call), SecretReceipts)

    def delete(self, secret_id: str, manage_token: str) -> None:
        self._call(_delete_call(secret_id, manage_token))

    def create_request(
        self, *, device_key: bytes, access_key: bytes, fill_token: bytes, expires_in: int
    ) -> CreatedRequest:
        """Open a secret request bound to the device with Ed25519 key `device_key`."""
        body = self._call(_create_request_call(device_key, access_key, fill_token, expires_in))
        return self._created_request(body)

    def request_status(self, request_id: str, request_token: str) -> RequestStatus:
        return self._request_status(self._call(_request_status_call(request_id, request_token)))

    def cancel_request(self, request_id: str, request_token: str) -> None:
        """Close the request unfilled; Refused when a fill holds or filled it, Gone when it
        is unknown or expired."""
        call = _cancel_request_call(request_id, request_token)
        self._cancelled(self._exchange(call), call)

    def fill_request(
        self, request_id: str, fill_token: bytes, envelope: Iterable[bytes], size: int, kind: Kind
    ) -> int:
        """Upload the envelope that fills the request; returns the secret's expiry."""
        body = self._call(_fill_call(request_id, fill_token, envelope, size, kind))
        return self._decode(body, _RequestFilledBody).expires_at

    def send(self, request: SendRequest) -> ServerAnswer:
        """Carry out one access-path request and return the server's answer, whatever its
        status (the machine judges it); an oversized answer is a NetworkError."""
        return self._exchange(_access_call(request))

    @contextlib.contextmanager
    def open_reveal(
        self, request: SendRequest
    ) -> Iterator[tuple[ServerAnswer, RevealedEnvelope | None]]:
        """Send a request whose answer may be the envelope (the reveal step, or the ticket
        step with `reveal`); on success the envelope streams while the block runs, otherwise
        (an error, or JSON: a ticket from a server that ignored `reveal`) the answer comes
        with its (bounded) body and no envelope."""
        call = _access_call(request)
        with self._transport_errors(), self._client.stream(**call.stream_options()) as response:
            if _is_envelope(response):
                envelope = RevealedEnvelope(_content_length(response), iter_inflated(response))
                yield _answer(response, None), envelope
            else:
                yield self._read_answer(response, read_bounded(response, _MAX_JSON_BYTES)), None

    def _call(self, call: _Call) -> bytes:
        return self._accepted(self._exchange(call), call)

    def _exchange(self, call: _Call) -> ServerAnswer:
        with self._transport_errors(), self._client.stream(**call.stream_options()) as response:
            return self._answered(response, read_bounded(response, _MAX_JSON_BYTES))


class AsyncSecretsApi(_ApiBase):
    """The asyncio twin of `SecretsApi` (same requests, same errors); use it with
    `async with`. Its connections come from `Transport.async_http_client`."""

    def __init__(
        self,
        server: Transport | str,
        *,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(server)
        self._client = self.transport.async_http_client(transport=http_transport)

    async def __aenter__(self) -> AsyncSecretsApi:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def create(
        self, envelope: AsyncIterable[bytes] | bytes, secret: NewSecret
    ) -> CreatedRecord:
        """Upload the envelope (bytes, or streamed from an async iterable) as a new secret."""
        return self._created(await self._call(_create_call(secret, envelope)))

    async def status(self, secret_id: str, manage_token: str) -> SecretStatus:
        body = await self._call(_status_call(secret_id, manage_token))
        return self._decode(body, SecretStatus)

    async def receipts(
        self, secret_id: str, manage_token: str, *, seen: int = 0, wait: int = 0
    ) -> SecretReceipts:
        """`SecretsApi.receipts` for asyncio."""
        call = _receipts_call(secret_id, manage_token, seen=seen, wait=wait)
        return self._decode(await self._call(call), SecretReceipts)

    async def delete(self, secret_id: str, manage_token: str) -> None:
        await self._call(_delete_call(secret_id, manage_token))

    async def create_request(
        self, *, device_key: bytes, access_key: bytes, fill_token: bytes, expires_in: int
    ) -> CreatedRequest:
        """`SecretsApi.create_request` for asyncio."""
        call = _create_request_call(device_key, access_key, fill_token, expires_in)
        return self._created_request(await self._call(call))

    async def request_status(self, request_id: str, request_token: str) -> RequestStatus:
        body = await self._call(_request_status_call(request_id, request_token))
        return self._request_status(body)

    async def cancel_request(self, request_id: str, request_token: str) -> None:
        """`SecretsApi.cancel_request` for asyncio."""
        call = _cancel_request_call(request_id, request_token)
        self._cancelled(await self._exchange(call), call)

    async def fill_request(
        self,
        request_id: str,
        fill_token: bytes,
        envelope: AsyncIterable[bytes] | bytes,
        size: int,
        kind: Kind,
    ) -> int:
        """`SecretsApi.fill_request` for asyncio (bytes, or streamed from an async
        iterable)."""
        body = await self._call(_fill_call(request_id, fill_token, envelope, size, kind))
        return self._decode(body, _RequestFilledBody).expires_at

    async def send(self, request: SendRequest) -> ServerAnswer:
        """`SecretsApi.send` for asyncio."""
        return await self._exchange(_access_call(request))

    @contextlib.asynccontextmanager
    async def open_reveal(
        self, request: SendRequest
    ) -> AsyncIterator[tuple[ServerAnswer, AsyncRevealedEnvelope | None]]:
        """`SecretsApi.open_reveal` for asyncio."""
        call = _access_call(request)
        with self._transport_errors():
            async with self._client.stream(**call.stream_options()) as response:
                if not _is_envelope(response):
                    body = await aread_bounded(response, _MAX_JSON_BYTES)
                    yield self._read_answer(response, body), None
                    return
                chunks = aiter_inflated(response)
                yield (
                    _answer(response, None),
                    AsyncRevealedEnvelope(_content_length(response), chunks),
                )

    async def _call(self, call: _Call) -> bytes:
        answer = await self._exchange(call)
        return self._accepted(answer, call)

    async def _exchange(self, call: _Call) -> ServerAnswer:
        with self._transport_errors():
            async with self._client.stream(**call.stream_options()) as response:
                body = await aread_bounded(response, _MAX_JSON_BYTES)
                return self._answered(response, body)


# -- the requests, built once for both clients ------------------------------------------


def _create_call(secret: NewSecret, envelope: object) -> _Call:
    params = {
        "expires_in": str(secret.expires_in),
        "views": str(secret.views),
        "kind": secret.kind,
        "access_key": b64url_encode(secret.access_key),
    }
    if secret.device_key is not None:
        params["device_key"] = b64url_encode(secret.device_key)
    return _Call(
        "POST",
        _API,
        refused="The server refused to store this secret.",
        params=params,
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(secret.size)},
        content=envelope,
    )


def _status_call(secret_id: str, manage_token: str) -> _Call:
    return _Call(
        "GET",
        f"{_API}/{_checked_id(secret_id)}/status",
        refused="The manage link is not valid for this secret.",
        headers=_bearer(manage_token),
    )


def _receipts_call(secret_id: str, manage_token: str, *, seen: int, wait: int) -> _Call:
    return _Call(
        "GET",
        f"{_API}/{_checked_id(secret_id)}/receipts",
        refused="The manage link is not valid for this secret.",
        params={"seen": str(seen), "wait": str(wait)},
        headers=_bearer(manage_token),
    )


def _delete_call(secret_id: str, manage_token: str) -> _Call:
    return _Call(
        "DELETE",
        f"{_API}/{_checked_id(secret_id)}",
        refused="The manage link is not valid for this secret.",
        headers=_bearer(manage_token),
    )


def _access_call(request: SendRequest) -> _Call:
    # The machine judges the answer (and words a 403) itself; the reveal answer's
    # Content-Length must count envelope bytes for progress to be right.
    headers = {"Accept-Encoding": "identity"} if request.is_reveal else None
    return _Call(request.method, request.path, refused="", headers=headers, json=request.json)


def _answer(response: httpx.Response, body: bytes | None) -> ServerAnswer:
    return ServerAnswer(response.status_code, body, response.headers.get("Retry-After"))


def _is_envelope(response: httpx.Response) -> bool:
    """A successful answer to a request that may reveal, other than JSON: the envelope."""
    media_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    return response.is_success and media_type != "application/json"


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("Content-Length", "")
    return int(value) if value.isascii() and value.isdigit() else None


def _checked_id(secret_id: str) -> str:
    # Ids go into URL paths; anything but the canonical form could escape the route.
    if not is_secret_id(secret_id):
        raise InvalidInput("That is not a valid secret id.")
    return secret_id


def _bearer(manage_token: str) -> dict[str, str]:
    if not is_manage_token(manage_token):
        raise InvalidInput("That is not a valid manage token.")
    return {"Authorization": f"Bearer {manage_token}"}


# -- secret requests (docs/protocol/requests.md) --------------------------------------------

_REQUESTS = "/api/v1/requests"


def _create_request_call(
    device_key: bytes, access_key: bytes, fill_token: bytes, expires_in: int
) -> _Call:
    return _Call(
        "POST",
        _REQUESTS,
        refused="The server refused to open this request.",
        json={
            "device_key": b64url_encode(device_key),
            "access_key": b64url_encode(access_key),
            "fill_token": b64url_encode(fill_token),
            "expires_in": expires_in,
        },
    )


def _request_status_call(request_id: str, request_token: str) -> _Call:
    return _Call(
        "GET",
        f"{_REQUESTS}/{_checked_id(request_id)}",
        refused="The pickup link is not valid for this request.",
        headers=_bearer(request_token),
    )


def _cancel_request_call(request_id: str, request_token: str) -> _Call:
    return _Call(
        "DELETE",
        f"{_REQUESTS}/{_checked_id(request_id)}",
        refused="The pickup link is not valid for this request.",
        headers=_bearer(request_token),
    )


def _fill_call(
    request_id: str, fill_token: bytes, envelope: object, size: int, kind: Kind
) -> _Call:
    return _Call(
        "POST",
        f"{_REQUESTS}/{_checked_id(request_id)}/fill",
        refused="The request link is damaged: the server refused its fill token.",
        params={"kind": kind},
        headers={
            "Authorization": f"Bearer {b64url_encode(fill_token)}",
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
        },
        content=envelope,
    )
