"""The one mapping from errors to exit codes and to the sentence shown on stderr.

Exit codes (DESIGN.md): 0 ok, 2 usage, 3 gone, 4 refused, 5 network; ours on top: 1 for a
local problem (a file that cannot be read or written, a damaged device store) and 70 for a
bug, an exception nothing here expected. Sentences for crypto failures are our own:
`DecryptionFailed` deliberately says nothing about why, and an unexpected exception is named
by its type only, since its message could hold anything (plaintext or key bytes included).
"""

from __future__ import annotations

import enum

from atopos.crypto.errors import (
    CryptoError,
    DecryptionFailed,
    DeviceRequired,
    PassphraseRequired,
    UnsupportedEnvelope,
)
from atopos.errors import (
    AnswerTooLarge,
    AtoposError,
    Gone,
    InvalidInput,
    NetworkError,
    Refused,
    Unavailable,
)

__all__ = ["ExitCode", "describe", "exit_code_for"]


class ExitCode(enum.IntEnum):
    OK = 0
    # A local problem: a file that cannot be read or written, a damaged device store, an
    # Atopos error of no class below. Not USAGE: the command line was right, and running it
    # again with other arguments will not help; the machine needs looking at.
    FAILURE = 1
    USAGE = 2
    GONE = 3
    REFUSED = 4
    NETWORK = 5
    INTERNAL = 70  # EX_SOFTWARE of sysexits.h: an exception nothing expected, i.e. a bug
    INTERRUPTED = 130  # 128 + SIGINT, what shells expect after Ctrl-C


# First match wins; TooLarge is an InvalidInput, RateLimited a Refused, StorageFull an
# Unavailable, UnsupportedEnvelope a DecryptionFailed.
_EXIT_CODES: tuple[tuple[type[BaseException], ExitCode], ...] = (
    (InvalidInput, ExitCode.USAGE),
    (Gone, ExitCode.GONE),
    (Refused, ExitCode.REFUSED),
    (Unavailable, ExitCode.NETWORK),
    (NetworkError, ExitCode.NETWORK),
    (CryptoError, ExitCode.REFUSED),
    (KeyboardInterrupt, ExitCode.INTERRUPTED),
)


def exit_code_for(error: BaseException) -> ExitCode:
    for kind, code in _EXIT_CODES:
        if isinstance(error, kind):
            return code
    if isinstance(error, AtoposError | OSError):
        return ExitCode.FAILURE
    return ExitCode.INTERNAL


def describe(error: BaseException) -> str:
    """One sentence for a person; never a traceback, never secret material."""
    if isinstance(error, AnswerTooLarge) and error.limit is not None:
        # Only --mixnet bounds the CLI's answers (cli/context.py): its reply blocks.
        return (
            f"This secret is {error.size} bytes, more than the {error.limit} bytes an answer "
            "through the mixnet can carry; no view was spent: reveal it without --mixnet."
        )
    if isinstance(error, AtoposError):
        return error.message
    if isinstance(error, PassphraseRequired):
        return "This secret needs a passphrase; pass --passphrase-file."
    if isinstance(error, DeviceRequired):
        return "This secret is sealed to a device, and this machine has no device to open it."
    if isinstance(error, UnsupportedEnvelope):
        return "This secret uses a newer envelope format; upgrade Atopos to open it."
    if isinstance(error, DecryptionFailed):
        return (
            "The secret could not be decrypted: the link or the passphrase is wrong, "
            "or the data was altered."
        )
    if isinstance(error, CryptoError):
        return "A cryptographic operation failed."
    if isinstance(error, OSError):
        reason = error.strerror or "input/output error"
        if error.filename is not None:
            return f"Could not use {error.filename}: {reason}."
        return f"A file operation failed: {reason}."
    # The type's own name only: str(error) may quote plaintext, a key or a token.
    return (
        f"Internal error ({type(error).__name__}); this is a bug in Atopos, please report it "
        "(run again with ATOPOS_DEBUG=1 to see where it happened)."
    )
