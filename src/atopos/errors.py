"""The one error hierarchy of Atopos.

Every layer raises these; the server maps them once to HTTP statuses
(`server/errors.py`) and the CLI once to exit codes (`cli/exits.py`).
Messages are one sentence meant for a person and never carry secret material.
"""

from __future__ import annotations

__all__ = [
    "AnswerTooLarge",
    "AtoposError",
    "Gone",
    "InvalidInput",
    "MalformedStamp",
    "NetworkError",
    "RateLimited",
    "Refused",
    "StorageFull",
    "TooLarge",
    "Unavailable",
    "WrongKey",
]


class AtoposError(Exception):
    """Base of every error Atopos raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Gone(AtoposError):
    """Unknown, expired, already viewed or deleted: the thing no longer exists."""


class Refused(AtoposError):
    """The request was understood and denied (bad ticket, wrong passphrase, wrong device)."""


class WrongKey(Refused):
    """The access proof does not match: the link's key or the passphrase is wrong. Said at
    the ticket step, so nothing was spent (docs/protocol/access.md)."""

    MESSAGE = "The key in the link or the passphrase is wrong; no view was spent."

    def __init__(self, message: str = MESSAGE) -> None:
        super().__init__(message)


class RateLimited(Refused):
    """Too many requests from one ephemeral identifier; retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InvalidInput(AtoposError):
    """The input does not match the schema or the rules (a 4xx, never a 500)."""


class MalformedStamp(InvalidInput):
    """A stamp not in its one canonical spelling (docs/protocol/access.md, "Stamp"): a
    client's bug, not an attack, so it is not counted as a failure."""

    MESSAGE = "The stamp is not spelled as the protocol says; nothing was spent."

    def __init__(self, message: str = MESSAGE) -> None:
        super().__init__(message)


class TooLarge(InvalidInput):
    """The body or file is over the configured limit."""


class AnswerTooLarge(TooLarge):
    """The envelope is larger than the `max_bytes` the reader can take (a mixnet's reply
    blocks); said before the view is spent, with the envelope's `size` and, on the reader's
    side, its `limit`."""

    def __init__(self, message: str, size: int, limit: int | None = None) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class Unavailable(AtoposError):
    """A dependency (storage) is down for now; the caller may retry later."""


class StorageFull(Unavailable):
    """The storage has no room left; nothing was written."""


class NetworkError(AtoposError):
    """The client could not talk to the server (connection, TLS, pin mismatch)."""
