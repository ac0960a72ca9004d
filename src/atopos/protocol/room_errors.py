"""The one error type of the room protocol (docs/protocol/rooms.md, "Errors").

Every parser and every transition raises `RoomProtocolError` and nothing else, with a
`code` from a fixed list that the relay also uses in its `error` frames and close reasons.
Messages never carry key material, names or plaintext.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["ErrorCode", "RoomProtocolError"]

ErrorCode = Literal[
    "malformed",  # not a frame of this protocol (JSON, field set, types, sizes, encoding)
    "too_large",  # over a size or count limit
    "unexpected",  # a legal frame in a state where it is not
    "bad_proof",  # a join or end proof that does not verify
    "bad_auth",  # a member-auth or commit-auth MAC that does not verify
    "bad_signature",  # a frame not signed by the member it names
    "bad_commit",  # a commit that disagrees with the roster, transcript or announcement
    "stale",  # a frame for an epoch or counter that is gone (replay, too old, too far ahead)
    "undecryptable",  # a message or seal that does not open
    "sequence_gap",  # the relay skipped, repeated or reordered its sequence numbers
    "not_admitted",  # refused by the members (knock mode) or by member auth
    "ended",  # the room has ended or never existed
]


class RoomProtocolError(Exception):
    """A frame or a move the room protocol does not allow; `code` says which rule."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
