"""`SecretsApi`: the secrets HTTP API (DESIGN.md) as typed calls with Atopos errors.

Status codes become `atopos.errors` here, once: 404 Gone, 403 Refused, 429 RateLimited,
413 TooLarge, 400/422 InvalidInput, 507 StorageFull, 503 and other 5xx Unavailable, and
connection trouble NetworkError. Error sentences are our own (or the server's sanitized one
for invalid input) and never contain a ticket, token or key.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator
from typing import Annotated, Literal, TypeVar

import httpx
import msgspec

from atopos.client.http import DEFAULT_TIMEOUT, Verify, build_http_client
from atopos.client.links import is_manage_token, is_secret_id, parse_server_url
from atopos.crypto.base64url import b64url_encode
from atopos.errors import (
    Gone,
    InvalidInput,
    NetworkError,
    RateLimited,
    Refused,
    StorageFull,
    TooLarge,
    Unavailable,
)

__all__ = [
    "Challenge",
    "CreatedRecord",
    "Kind",
    "RevealedEnvelope",
    "SecretStatus",
    "SecretsApi",
    "Ticket",
]

Kind = Literal["text", "file"]
_T = TypeVar("_T")

_API = "/api/v1/secrets"
# JSON answers are a few hundred bytes; a hostile server must not make us buffer more.
_MAX_JSON_BYTES = 64 * 1024
_MAX_SERVER_SENTENCE = 300
# Ask again after this long when a 429 carries no usable Retry-After.
_DEFAULT_RETRY_AFTER = 1
_MAX_RETRY_AFTER = 24 * 3600
_GONE = "This secret does not exist: it expired, was already viewed, or was deleted."
# Numbers a server sends back are shown or printed as JSON: a hostile one could send an
# integer too long for Python to turn into text (over 4300 digits), or a date no clock knows.
_ServerNumber = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


@dataclasses.dataclass(frozen=True, slots=True)
class CreatedRecord:
    """The server's receipt for a stored envelope."""

    secret_id: str
    manage_token: str = dataclasses.field(repr=False)
    expires_at: int


# Challenge, Ticket and SecretStatus are also the schemas the server's answers are decoded
# into: msgspec checks types and bounds and ignores fields it does not know.


@dataclasses.dataclass(frozen=True, slots=True)
class Challenge:
    """A proof-of-work challenge bound to one secret id; `is_bound` when the ticket step
    will also want a device proof."""

    challenge: str
    bits: int
    expires_at: int
    is_bound: bool = False  # servers before device binding do not send it
    has_passphrase: bool = False  # nor this, before the passphrase hint


@dataclasses.dataclass(frozen=True, slots=True)
class Ticket:
    """A short-lived, single-use permission to reveal one view."""

    ticket: str = dataclasses.field(repr=False)
    expires_at: int


@dataclasses.dataclass(frozen=True, slots=True)
class SecretStatus:
    """What the manage token may learn about a secret; `size` is the stored envelope size."""

    views_left: _ServerNumber
    expires_at: _ServerNumber
    created_at: int
    kind: Kind
    size: _ServerNumber
    is_bound: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class RevealedEnvelope:
    """The envelope as it streams in; `size` is its Content-Length when the server sent one."""

    size: int | None
    chunks: Iterator[bytes]

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks


class _CreateBody(msgspec.Struct, frozen=True):
    id: str
    manage_token: str
    expires_at: _ServerNumber


class _ErrorBody(msgspec.Struct, frozen=True):
    error: str
    message: str


class SecretsApi:
    """Synchronous client of one Atopos server's secrets API; use it as a context manager."""

    def __init__(
        self,
        server: str,
        *,
        transport: httpx.BaseTransport | None = None,
        verify: Verify = True,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> None:
        self.server = parse_server_url(server)
        self._client = build_http_client(
            self.server, transport=transport, verify=verify, timeout=timeout
        )

    def __enter__(self) -> SecretsApi:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def create(
        self,
        envelope: Iterable[bytes],
        size: int,
        *,
        expires_in: int,
        views: int,
        kind: Kind,
        device_key: bytes | None = None,
    ) -> CreatedRecord:
        """Upload `size` envelope bytes, streamed from `envelope`, as a new secret; with
        `device_key` (Ed25519, 32 bytes) the ticket step will demand that device's proof."""
        params = {"expires_in": str(expires_in), "views": str(views), "kind": kind}
        if device_key is not None:
            params["device_key"] = b64url_encode(device_key)
        body = self._call(
            "POST",
            _API,
            refused="The server refused to store this secret.",
            params=params,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            content=envelope,
        )
        created = self._decode(body, _CreateBody)
        if not is_secret_id(created.id) or not is_manage_token(created.manage_token):
            raise self._not_understood()
        return CreatedRecord(created.id, created.manage_token, created.expires_at)

    def challenge(self, secret_id: str) -> Challenge:
        body = self._call(
            "POST",
            f"{_API}/{_checked_id(secret_id)}/challenge",
            refused="The server refused to hand out a challenge.",
        )
        return self._decode(body, Challenge)

    def ticket(
        self,
        secret_id: str,
        challenge: str,
        nonce: int,
        *,
        device_proof: bytes | None = None,
        refused: str = "The server refused the proof of work (the challenge may have expired).",
    ) -> Ticket:
        """Trade a solved challenge (and, for a bound secret, the device proof) for a ticket;
        `refused` is the sentence of the Refused error a 403 becomes."""
        request: dict[str, object] = {"challenge": challenge, "nonce": nonce}
        if device_proof is not None:
            request["device_proof"] = b64url_encode(device_proof)
        body = self._call(
            "POST",
            f"{_API}/{_checked_id(secret_id)}/ticket",
            refused=refused,
            json=request,
        )
        return self._decode(body, Ticket)

    @contextlib.contextmanager
    def reveal(self, secret_id: str, ticket: str) -> Iterator[RevealedEnvelope]:
        """Spend `ticket` on one view and stream the envelope while the block runs."""
        path = f"{_API}/{_checked_id(secret_id)}/reveal"
        with (
            self._transport_errors(),
            self._client.stream(
                "POST",
                path,
                json={"ticket": ticket},
                # Content-Length must count envelope bytes for progress to be right.
                headers={"Accept-Encoding": "identity"},
            ) as response,
        ):
            if not response.is_success:
                _raise_for_status(
                    response,
                    _read_bounded(response),
                    refused="The access ticket was refused (expired or already used).",
                )
            yield RevealedEnvelope(_content_length(response), response.iter_bytes())

    def status(self, secret_id: str, manage_token: str) -> SecretStatus:
        body = self._call(
            "GET",
            f"{_API}/{_checked_id(secret_id)}/status",
            refused="The manage link is not valid for this secret.",
            headers=_bearer(manage_token),
        )
        return self._decode(body, SecretStatus)

    def delete(self, secret_id: str, manage_token: str) -> None:
        self._call(
            "DELETE",
            f"{_API}/{_checked_id(secret_id)}",
            refused="The manage link is not valid for this secret.",
            headers=_bearer(manage_token),
        )

    def _call(
        self,
        method: str,
        path: str,
        *,
        refused: str,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        content: Iterable[bytes] | None = None,
        json: object = None,
    ) -> bytes:
        with (
            self._transport_errors(),
            self._client.stream(
                method, path, params=params, headers=headers, content=content, json=json
            ) as response,
        ):
            body = _read_bounded(response)
            if body is None:
                raise NetworkError(f"The server at {self.server} sent an oversized answer.")
            if not response.is_success:
                _raise_for_status(response, body, refused=refused)
            return body

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
        except httpx.TransportError as exc:
            raise NetworkError(f"The connection to the server at {self.server} failed.") from exc


def _raise_for_status(response: httpx.Response, body: bytes | None, *, refused: str) -> None:
    status = response.status_code
    if status == 404:
        raise Gone(_GONE)
    if status == 429:
        retry_after = _retry_after(response)
        unit = "second" if retry_after == 1 else "seconds"
        raise RateLimited(
            f"The server is limiting requests; try again in {retry_after} {unit}.", retry_after
        )
    if status == 403:
        raise Refused(refused)
    if status == 413:
        raise TooLarge("The secret is larger than this server accepts.")
    if status in (400, 422):
        raise InvalidInput(_server_sentence(body) or "The server rejected the request as invalid.")
    if status == 507:
        raise StorageFull("The server's storage is full; try again later.")
    if status >= 500:
        raise Unavailable(f"The server is unavailable right now (HTTP {status}); try again later.")
    raise NetworkError(f"The server answered with an unexpected HTTP status {status}.")


def _read_bounded(response: httpx.Response, limit: int = _MAX_JSON_BYTES) -> bytes | None:
    """The body if it is at most `limit` bytes, else None (the rest is never read)."""
    data = bytearray()
    for piece in response.iter_bytes():
        data += piece
        if len(data) > limit:
            return None
    return bytes(data)


def _server_sentence(body: bytes | None) -> str | None:
    """The server's `message`, reduced to one printable line: it ends up on a terminal."""
    if body is None:
        return None
    try:
        message = msgspec.json.decode(body, type=_ErrorBody).message
    except (msgspec.DecodeError, RecursionError):
        return None
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in message).split())
    return text[:_MAX_SERVER_SENTENCE] or None


def _retry_after(response: httpx.Response) -> int:
    # Only delta-seconds: our server sends them, and an HTTP date would need our clock.
    value = response.headers.get("Retry-After", "").strip()
    if value.isascii() and value.isdigit() and len(value) <= 6:
        return min(max(int(value), 0), _MAX_RETRY_AFTER)
    return _DEFAULT_RETRY_AFTER


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
