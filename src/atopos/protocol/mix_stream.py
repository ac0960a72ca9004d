"""WebSocket frames carried through the exit service (docs/protocol/mixnet.md, "Streams").

A room's WebSocket is held by the exit; the client reaches it with exit requests (WSOPEN,
WSPOLL, WSCLOSE) whose bodies are numbered batches of frames. The mixnet delays every
request and answer independently, so batches arrive out of order: both sides put frames
back in sequence before passing them on (the room protocol refuses reordered frames).

Batch: `first sequence number (4, big-endian) || frames`; a frame is `kind (1: text,
2: binary) || length (4) || data`, numbered from the batch's first sequence number on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "FIRST_FRAMES_HEADER",
    "MAX_BUFFERED_FRAMES",
    "FrameReorder",
    "InvalidBatch",
    "decode_batch",
    "encode_batch",
    "frame_bytes",
]

MAX_BUFFERED_FRAMES = 512
# A WSOPEN with this header (value "1") is answered with the server's first frames, as a
# WSPOLL would be: a room relay's challenge then rides back on the WSOPEN answer, and the
# client sends its join one mixnet round trip sooner.
FIRST_FRAMES_HEADER = "x-atopos-first-frames"
_TEXT, _BINARY = 1, 2


class InvalidBatch(ValueError):
    """A batch that does not parse, or frames too far ahead to buffer."""


def frame_bytes(frame: str | bytes) -> int:
    """What one frame costs in a batch."""
    return 5 + len(frame.encode() if isinstance(frame, str) else frame)


def encode_batch(first: int, frames: list[str | bytes]) -> bytes:
    parts = [first.to_bytes(4, "big")]
    for frame in frames:
        kind, data = (_TEXT, frame.encode()) if isinstance(frame, str) else (_BINARY, frame)
        parts.append(bytes([kind]) + len(data).to_bytes(4, "big") + data)
    return b"".join(parts)


def decode_batch(data: bytes) -> tuple[int, list[str | bytes]]:
    if len(data) < 4:
        raise InvalidBatch("truncated batch")
    first, offset, frames = int.from_bytes(data[:4], "big"), 4, []
    while offset < len(data):
        if len(data) < offset + 5 or data[offset] not in (_TEXT, _BINARY):
            raise InvalidBatch("malformed frame")
        length = int.from_bytes(data[offset + 1 : offset + 5], "big")
        chunk = data[offset + 5 : offset + 5 + length]
        if len(chunk) != length:
            raise InvalidBatch("truncated frame")
        try:
            frames.append(chunk.decode() if data[offset] == _TEXT else chunk)
        except UnicodeDecodeError:
            raise InvalidBatch("a text frame is not UTF-8") from None
        offset += 5 + length
    return first, frames


@dataclass(slots=True)
class FrameReorder:
    """Frames in, in any order by sequence number; out in order, each once."""

    next_seq: int = 0
    _waiting: dict[int, str | bytes] = field(default_factory=dict)

    def add(self, first: int, frames: list[str | bytes]) -> list[str | bytes]:
        """The frames now in order (possibly none); repeats are ignored."""
        for offset, frame in enumerate(frames):
            seq = first + offset
            if seq >= self.next_seq + MAX_BUFFERED_FRAMES:
                raise InvalidBatch("frames too far ahead")
            if seq >= self.next_seq:
                self._waiting.setdefault(seq, frame)
        ready = []
        while self.next_seq in self._waiting:
            ready.append(self._waiting.pop(self.next_seq))
            self.next_seq += 1
        return ready
