"""The frames between a node's workers and its SQLite writer process
(storage/sqlite_writer_process.py, storage/sqlite_remote_writer.py).

A frame is a 4-byte big-endian length and that many bytes of payload, at most `MAX_FRAME`
(above the largest chunk a create sends); a longer one ends its connection. A request is the
pickle of `(request_id, operation name, args, deadline)`, the deadline being the monotonic
time (CLOCK_MONOTONIC, one clock for every process of the machine) when the worker stops
waiting; a reply is the pickle of `(request_id, True, result)` or `(request_id, False,
(error class, args, attributes))`, rebuilt as the same error type on the worker's side.

pickle runs code of the sender's choosing when loaded, so it is only acceptable here because
both ends are processes of one node, forked by one supervisor and running as one user, and
the socket lies in a directory that only this user can enter (0700): whoever can send a frame
could already run code as the node (the writer process also closes, unread, a connection
from another user: SO_PEERCRED). Nothing else may ever speak this protocol.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any

from atopos.storage.chunks import CHUNK_BYTES

__all__ = [
    "MAX_FRAME",
    "FrameReader",
    "FrameTooLarge",
    "UnknownWriteOperation",
    "encode_frame",
    "error_from_reply",
    "error_reply",
]

# Above the largest frame either side sends (a chunk of a body, or a small body inline, and a
# few fields), and small enough that a connection's half-sent frame cannot hold much memory.
MAX_FRAME = 4 * CHUNK_BYTES
_LENGTH = struct.Struct(">I")


class FrameTooLarge(Exception):
    """A frame announced more bytes than MAX_FRAME: its connection ends."""


class UnknownWriteOperation(Exception):
    """The writer process was asked for an operation it has not registered."""


def encode_frame(payload: object) -> bytes:
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    if len(data) > MAX_FRAME:
        raise FrameTooLarge(f"a frame of {len(data)} bytes is over the cap")
    return _LENGTH.pack(len(data)) + data


class FrameReader:
    """Cuts the bytes of one connection into payloads."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        """The payloads completed by `data`; FrameTooLarge when one is over the cap."""
        self._buffer += data
        payloads = []
        start = 0
        with memoryview(self._buffer) as view:
            while len(view) - start >= _LENGTH.size:
                (length,) = _LENGTH.unpack_from(view, start)
                if length > MAX_FRAME:
                    raise FrameTooLarge(f"a frame of {length} bytes is over the cap")
                end = start + _LENGTH.size + length
                if len(view) < end:
                    break
                # Only this node's own processes can reach the socket (module docstring).
                payload = pickle.loads(view[start + _LENGTH.size : end])  # noqa: S301
                payloads.append(payload)
                start = end
        del self._buffer[:start]
        return payloads


def error_reply(
    error: BaseException,
) -> tuple[type[BaseException], tuple[Any, ...], dict[str, Any]]:
    """An error as a reply carries it: its class, its args and its attributes (our errors'
    constructors take other arguments than their args, so pickle's own way cannot rebuild
    them)."""
    return type(error), error.args, dict(getattr(error, "__dict__", {}))


def error_from_reply(
    carried: tuple[type[BaseException], tuple[Any, ...], dict[str, Any]],
) -> Exception:
    error_type, args, attributes = carried
    if not (isinstance(error_type, type) and issubclass(error_type, Exception)):
        raise TypeError("the writer process replied with something that is not an error")
    error = error_type.__new__(error_type)
    error.args = args
    error.__dict__.update(attributes)
    return error
