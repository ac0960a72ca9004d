"""`SecretsApi`: the secrets HTTP API (DESIGN.md) as typed calls with Atopos errors.

Status codes become `atopos.errors` through `protocol/answers.py` (once, for every route);
connection trouble becomes NetworkError here. The access path's requests are built by
`protocol/access_path.py`; `send` and `open_reveal` carry them out. Error sentences never
contain a ticket, token or key.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator
from typing import Annotated, Literal, TypeVar

import httpx
import msgspec

from atopos.client.answer_body import read_bounded
from atopos.client.links import is_manage_token, is_secret_id
from atopos.client.transport import Transport, Verify, build_http_client
from atopos.crypto.base64url import b64url_encode
from atopos.errors import InvalidInput, NetworkError
from atopos.protocol.access_path import Challenge, SendRequest, Ticket
from atopos.protocol.answers import ServerAnswer, error_for_answer

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


class SecretsApi:
    """Synchronous client of one Atopos server's secrets API; use it as a context manager.

    `server` is a `Transport` (server URL, TLS policy, proxy) or, for the defaults, a URL.
    """

    def __init__(self, server: Transport | str, *, verify: Verify = True) -> None:
        self.transport = server if isinstance(server, Transport) else Transport(server)
        self.server = self.transport.server
        self._client = build_http_client(
            self.server,
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

    def send(self, request: SendRequest) -> ServerAnswer:
        """Carry out one access-path request and return the server's answer, whatever its
        status (the machine judges it); an oversized answer is a NetworkError."""
        with (
            self._transport_errors(),
            self._client.stream(request.method, request.path, json=request.json) as response,
        ):
            body = read_bounded(response, _MAX_JSON_BYTES)
            if body is None:
                raise self._oversized()
            return _answer(response, body)

    @contextlib.contextmanager
    def open_reveal(
        self, request: SendRequest
    ) -> Iterator[tuple[ServerAnswer, RevealedEnvelope | None]]:
        """Send the reveal request; on success the envelope streams while the block runs,
        otherwise the answer comes with its (bounded) body and no envelope."""
        with (
            self._transport_errors(),
            self._client.stream(
                request.method,
                request.path,
                json=request.json,
                # Content-Length must count envelope bytes for progress to be right.
                headers={"Accept-Encoding": "identity"},
            ) as response,
        ):
            if not response.is_success:
                yield _answer(response, read_bounded(response, _MAX_JSON_BYTES)), None
                return
            envelope = RevealedEnvelope(_content_length(response), response.iter_bytes())
            yield _answer(response, None), envelope

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
            body = read_bounded(response, _MAX_JSON_BYTES)
            if body is None:
                raise self._oversized()
            if not response.is_success:
                raise error_for_answer(_answer(response, body), refused=refused)
            return body

    def _decode(self, body: bytes, schema: type[_T]) -> _T:
        try:
            return msgspec.json.decode(body, type=schema)
        except (msgspec.DecodeError, RecursionError):  # nesting past the parser's depth
            raise self._not_understood() from None

    def _oversized(self) -> NetworkError:
        return NetworkError(f"The server at {self.server} sent an oversized answer.")

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


def _answer(response: httpx.Response, body: bytes | None) -> ServerAnswer:
    return ServerAnswer(response.status_code, body, response.headers.get("Retry-After"))


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
