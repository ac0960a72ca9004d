"""Requests to an exit service through the mixnet, and their answers (docs/protocol/mixnet.md,
"Exit service").

A client cuts one request into fragments that each fit one mix message (at most
MAX_DATA_BYTES): request parts, and parts carrying the SURBs the exit answers with. The exit
reassembles them (bounded: fragments per request, open requests, requests per session, an
age limit), performs the request, and cuts the answer into reply messages, one per SURB.
Both sides are sans-I/O: the caller passes the time in.

Fragment: `session (16) || request (4) || index (2) || count (2) || kind (1) || content`,
kind 1 a slice of the request bytes, kind 2 one to three SURBs of SURB_BYTES each.
Reply message (MESSAGE_BYTES): `session || request || index || count || length (2) || chunk
|| zero padding`. Request bytes: `header length (2) || JSON header || body`, the same for
answers; the header is `{"method", "path", "headers"}` or `{"status", "headers"}`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import msgspec

from atopos.crypto.sphinx import ADDRESS_BYTES, HEADER_BYTES, MESSAGE_BYTES, Surb
from atopos.crypto.sphinx_lioness import LIONESS_KEY_BYTES
from atopos.protocol.mix_message import MAX_DATA_BYTES

__all__ = [
    "FRAGMENT_HEADER_BYTES",
    "MAX_REPLY_CHUNK",
    "MAX_REQUEST_CHUNK",
    "REPLY_HEADER_BYTES",
    "SESSION_BYTES",
    "SURBS_PER_FRAGMENT",
    "SURB_BYTES",
    "AssembledRequest",
    "ExitLimits",
    "ExitRequest",
    "ExitResponse",
    "InvalidExitMessage",
    "ReplyAssembler",
    "RequestAssembler",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "reply_messages",
    "request_fragments",
]

SESSION_BYTES = 16
_REQUEST_ID_BYTES = 4
_ID_BYTES = SESSION_BYTES + _REQUEST_ID_BYTES
FRAGMENT_HEADER_BYTES = _ID_BYTES + 2 + 2 + 1
REPLY_HEADER_BYTES = _ID_BYTES + 2 + 2 + 2
MAX_REQUEST_CHUNK = MAX_DATA_BYTES - FRAGMENT_HEADER_BYTES
MAX_REPLY_CHUNK = MESSAGE_BYTES - REPLY_HEADER_BYTES
SURB_BYTES = ADDRESS_BYTES + HEADER_BYTES + LIONESS_KEY_BYTES
SURBS_PER_FRAGMENT = MAX_REQUEST_CHUNK // SURB_BYTES
_MAX_HEADER_BYTES = 16 * 1024


class InvalidExitMessage(ValueError):
    """A fragment, reply or request that is malformed or over a limit: it is dropped."""


class _Kind(IntEnum):
    REQUEST = 1
    SURBS = 2


@dataclass(frozen=True, slots=True)
class ExitLimits:
    """The exit's caps (docs/protocol/mixnet.md lists the defaults)."""

    max_fragments: int = 160  # per request, SURB fragments included (about 256 KiB of request)
    max_surbs: int = 64  # per request: the answer is at most 64 x 2022 bytes
    max_open: int = 512  # requests being reassembled or performed, all sessions together
    max_per_session: int = 8  # requests of one session being reassembled or performed
    reassembly_seconds: float = 60.0  # an incomplete request older than this is dropped


@dataclass(frozen=True, slots=True)
class ExitRequest:
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True, slots=True)
class ExitResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


class _RequestHeader(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    method: str
    path: str
    headers: list[tuple[str, str]]


class _ResponseHeader(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    status: int
    headers: list[tuple[str, str]]


def _framed(header: bytes, body: bytes) -> bytes:
    if len(header) > _MAX_HEADER_BYTES:
        raise InvalidExitMessage("the header is too long")
    return len(header).to_bytes(2, "big") + header + body


def _split(data: bytes) -> tuple[bytes, bytes]:
    if len(data) < 2:
        raise InvalidExitMessage("truncated")
    length = int.from_bytes(data[:2], "big")
    if length > _MAX_HEADER_BYTES or len(data) < 2 + length:
        raise InvalidExitMessage("truncated")
    return data[2 : 2 + length], data[2 + length :]


def encode_request(request: ExitRequest) -> bytes:
    header = _RequestHeader(
        request.method, request.path, [(name, value) for name, value in request.headers]
    )
    return _framed(msgspec.json.encode(header), request.body)


def decode_request(data: bytes) -> ExitRequest:
    """The request; InvalidExitMessage unless the method is a token and the path absolute."""
    header_bytes, body = _split(data)
    try:
        header = msgspec.json.decode(header_bytes, type=_RequestHeader)
    except msgspec.DecodeError:
        raise InvalidExitMessage("malformed request header") from None
    if not (header.method.isascii() and header.method.isalpha() and len(header.method) <= 16):
        raise InvalidExitMessage("bad method")
    if not header.path.startswith("/") or header.path.startswith("//"):
        raise InvalidExitMessage("the path must be absolute on the server")
    return ExitRequest(header.method.upper(), header.path, tuple(header.headers), body)


def encode_response(response: ExitResponse) -> bytes:
    header = _ResponseHeader(response.status, [(name, value) for name, value in response.headers])
    return _framed(msgspec.json.encode(header), response.body)


def decode_response(data: bytes) -> ExitResponse:
    header_bytes, body = _split(data)
    try:
        header = msgspec.json.decode(header_bytes, type=_ResponseHeader)
    except msgspec.DecodeError:
        raise InvalidExitMessage("malformed response header") from None
    if not 100 <= header.status <= 599:
        raise InvalidExitMessage("bad status")
    return ExitResponse(header.status, tuple(header.headers), body)


def _encode_surb(surb: Surb) -> bytes:
    return surb.first_address + surb.header + surb.payload_key


def _decode_surb(data: bytes) -> Surb:
    header_end = ADDRESS_BYTES + HEADER_BYTES
    return Surb(data[:ADDRESS_BYTES], data[ADDRESS_BYTES:header_end], data[header_end:])


def request_fragments(
    session: bytes, request_id: int, request: bytes, surbs: list[Surb]
) -> list[bytes]:
    """The fragments (each at most MAX_DATA_BYTES) carrying `request` and `surbs`."""
    if len(session) != SESSION_BYTES or not 0 <= request_id < 2**32 or not surbs:
        raise ValueError("a session of 16 bytes, a 32-bit request id and at least one SURB")
    parts = [
        (_Kind.REQUEST, request[i : i + MAX_REQUEST_CHUNK])
        for i in range(0, max(len(request), 1), MAX_REQUEST_CHUNK)
    ]
    for i in range(0, len(surbs), SURBS_PER_FRAGMENT):
        batch = surbs[i : i + SURBS_PER_FRAGMENT]
        parts.append((_Kind.SURBS, b"".join(_encode_surb(s) for s in batch)))
    if len(parts) >= 2**16:
        raise ValueError("too many fragments")
    prefix = session + request_id.to_bytes(_REQUEST_ID_BYTES, "big")
    count = len(parts).to_bytes(2, "big")
    return [
        prefix + index.to_bytes(2, "big") + count + bytes([kind]) + content
        for index, (kind, content) in enumerate(parts)
    ]


@dataclass(slots=True)
class _Partial:
    started: float
    count: int
    parts: dict[int, tuple[_Kind, bytes]] = field(default_factory=dict)
    surb_count: int = 0


@dataclass(frozen=True, slots=True)
class AssembledRequest:
    """A whole request: the bytes, and the SURBs to answer it with."""

    session: bytes
    request_id: int
    request: bytes
    surbs: tuple[Surb, ...]


class RequestAssembler:
    """The exit's reassembly buffers, with every cap of `ExitLimits`.

    A request counts against its session and the total from its first fragment until
    `finish` (its answer was sent or given up); a fragment over a cap is dropped."""

    def __init__(self, limits: ExitLimits) -> None:
        self.limits = limits
        self._partials: dict[tuple[bytes, int], _Partial] = {}
        self._in_flight: set[tuple[bytes, int]] = set()
        self._per_session: dict[bytes, int] = {}

    @property
    def open_requests(self) -> int:
        return len(self._partials) + len(self._in_flight)

    def add(self, fragment: bytes, now: float) -> AssembledRequest | None:
        """Take one fragment; the whole request once its last fragment arrived."""
        self.expire(now)
        if len(fragment) < FRAGMENT_HEADER_BYTES or len(fragment) > MAX_DATA_BYTES:
            raise InvalidExitMessage("not a fragment")
        session = fragment[:SESSION_BYTES]
        request_id = int.from_bytes(fragment[SESSION_BYTES:_ID_BYTES], "big")
        index = int.from_bytes(fragment[_ID_BYTES : _ID_BYTES + 2], "big")
        count = int.from_bytes(fragment[_ID_BYTES + 2 : _ID_BYTES + 4], "big")
        try:
            kind = _Kind(fragment[_ID_BYTES + 4])
        except ValueError:
            raise InvalidExitMessage("unknown fragment kind") from None
        content = fragment[FRAGMENT_HEADER_BYTES:]
        key = (session, request_id)
        if key in self._in_flight:
            raise InvalidExitMessage("that request is already being answered")
        if not 1 <= count <= self.limits.max_fragments or index >= count:
            raise InvalidExitMessage("fragment count out of bounds")
        partial = self._partials.get(key)
        if partial is None:
            if self.open_requests >= self.limits.max_open:
                raise InvalidExitMessage("too many open requests")
            if self._per_session.get(session, 0) >= self.limits.max_per_session:
                raise InvalidExitMessage("too many open requests in this session")
            partial = self._partials[key] = _Partial(now, count)
            self._per_session[session] = self._per_session.get(session, 0) + 1
        if partial.count != count or index in partial.parts:
            raise InvalidExitMessage("inconsistent or repeated fragment")
        if kind is _Kind.SURBS:
            surbs = len(content) // SURB_BYTES
            if not content or len(content) % SURB_BYTES or surbs > SURBS_PER_FRAGMENT:
                raise InvalidExitMessage("malformed SURB fragment")
            if partial.surb_count + surbs > self.limits.max_surbs:
                raise InvalidExitMessage("too many SURBs")
            partial.surb_count += surbs
        partial.parts[index] = (kind, content)
        if len(partial.parts) < count:
            return None
        del self._partials[key]
        self._in_flight.add(key)
        ordered = [partial.parts[i] for i in range(count)]
        request = b"".join(c for k, c in ordered if k is _Kind.REQUEST)
        surbs_bytes = b"".join(c for k, c in ordered if k is _Kind.SURBS)
        surb_list = tuple(
            _decode_surb(surbs_bytes[i : i + SURB_BYTES])
            for i in range(0, len(surbs_bytes), SURB_BYTES)
        )
        if not surb_list:
            self.finish(session, request_id)
            raise InvalidExitMessage("a request without SURBs cannot be answered")
        return AssembledRequest(session, request_id, request, surb_list)

    def finish(self, session: bytes, request_id: int) -> None:
        """The request was answered (or given up): it no longer counts against the caps."""
        self._in_flight.discard((session, request_id))
        self._release(session)

    def expire(self, now: float) -> None:
        """Drop incomplete requests older than `reassembly_seconds`."""
        for key, partial in list(self._partials.items()):
            if now - partial.started >= self.limits.reassembly_seconds:
                del self._partials[key]
                self._release(key[0])

    def _release(self, session: bytes) -> None:
        left = self._per_session.get(session, 0) - 1
        if left > 0:
            self._per_session[session] = left
        else:
            self._per_session.pop(session, None)


def reply_messages(session: bytes, request_id: int, response: bytes, surbs: int) -> list[bytes]:
    """The MESSAGE_BYTES reply messages carrying `response`, one per SURB; ValueError when
    it needs more than `surbs` of them."""
    chunks = [
        response[i : i + MAX_REPLY_CHUNK] for i in range(0, max(len(response), 1), MAX_REPLY_CHUNK)
    ]
    if len(chunks) > surbs:
        raise ValueError("the answer needs more reply blocks than the request carried")
    prefix = session + request_id.to_bytes(_REQUEST_ID_BYTES, "big")
    count = len(chunks).to_bytes(2, "big")
    messages = []
    for index, chunk in enumerate(chunks):
        message = prefix + index.to_bytes(2, "big") + count + len(chunk).to_bytes(2, "big")
        message += chunk
        messages.append(message + bytes(MESSAGE_BYTES - len(message)))
    return messages


class ReplyAssembler:
    """The client's side: reply messages of one session back into whole answers."""

    def __init__(self, session: bytes, max_fragments: int) -> None:
        self.session = session
        self.max_fragments = max_fragments
        self._parts: dict[int, dict[int, bytes]] = {}
        self._counts: dict[int, int] = {}

    def expect(self, request_id: int) -> None:
        self._parts[request_id] = {}

    def forget(self, request_id: int) -> None:
        self._parts.pop(request_id, None)
        self._counts.pop(request_id, None)

    def add(self, message: bytes) -> tuple[int, bytes] | None:
        """(request id, answer bytes) once the answer's last reply arrived."""
        if len(message) != MESSAGE_BYTES or message[:SESSION_BYTES] != self.session:
            raise InvalidExitMessage("not a reply of this session")
        request_id = int.from_bytes(message[SESSION_BYTES:_ID_BYTES], "big")
        index = int.from_bytes(message[_ID_BYTES : _ID_BYTES + 2], "big")
        count = int.from_bytes(message[_ID_BYTES + 2 : _ID_BYTES + 4], "big")
        length = int.from_bytes(message[_ID_BYTES + 4 : REPLY_HEADER_BYTES], "big")
        parts = self._parts.get(request_id)
        if parts is None:
            raise InvalidExitMessage("no such request")
        if not 1 <= count <= self.max_fragments or index >= count or length > MAX_REPLY_CHUNK:
            raise InvalidExitMessage("reply out of bounds")
        if self._counts.setdefault(request_id, count) != count:
            raise InvalidExitMessage("inconsistent reply")
        if any(message[REPLY_HEADER_BYTES + length :]):
            raise InvalidExitMessage("non-zero padding")
        parts[index] = message[REPLY_HEADER_BYTES : REPLY_HEADER_BYTES + length]
        if len(parts) < count:
            return None
        self.forget(request_id)
        return request_id, b"".join(parts[i] for i in range(count))
