"""A protocol `Failure` (plain data) becomes the Atopos exception the CLI maps to an exit
code: the one place the client crosses from the protocol's words to `atopos.errors`."""

from __future__ import annotations

from atopos.crypto.errors import PassphraseRequired
from atopos.errors import (
    AnswerTooLarge,
    AtoposError,
    Gone,
    InvalidInput,
    NetworkError,
    RateLimited,
    Refused,
    StorageFull,
    TooLarge,
    Unavailable,
    WrongKey,
)
from atopos.protocol.answers import Failure, FailureKind

__all__ = ["error_for"]

_ERRORS: dict[FailureKind, type[AtoposError]] = {
    FailureKind.GONE: Gone,
    FailureKind.REFUSED: Refused,
    FailureKind.WRONG_KEY: WrongKey,
    FailureKind.INVALID_INPUT: InvalidInput,
    FailureKind.TOO_LARGE: TooLarge,
    FailureKind.STORAGE_FULL: StorageFull,
    FailureKind.UNAVAILABLE: Unavailable,
    FailureKind.NETWORK: NetworkError,
}


def error_for(failure: Failure) -> Exception:
    """The exception to raise for `failure`."""
    if failure.kind is FailureKind.RATE_LIMITED:
        assert failure.retry_after is not None  # failure_for_answer always sets it
        return RateLimited(failure.message, failure.retry_after)
    if failure.kind is FailureKind.PASSPHRASE_REQUIRED:
        return PassphraseRequired(failure.message)
    if failure.kind is FailureKind.TOO_LARGE and failure.size is not None:
        return AnswerTooLarge(failure.message, failure.size, failure.limit)
    return _ERRORS[failure.kind](failure.message)
