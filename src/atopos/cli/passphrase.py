"""Where a passphrase comes from: a file (`--passphrase-file`) or a hidden prompt."""

from __future__ import annotations

import getpass
from pathlib import Path

from atopos.crypto.errors import PassphraseRequired
from atopos.errors import InvalidInput

__all__ = [
    "MAX_PASSPHRASE_FILE_BYTES",
    "prompt_for_attempt",
    "prompt_new_passphrase",
    "prompt_passphrase",
    "read_passphrase_file",
]

# Far more than any passphrase; the bound keeps `--passphrase-file /dev/zero` (or a large
# file given by mistake) from filling memory. Pipes (`<(pass show x)`) are read as well.
MAX_PASSPHRASE_FILE_BYTES = 64 * 1024


def read_passphrase_file(path: Path) -> str:
    """The file's text minus one trailing newline (as editors and `echo` add one)."""
    with path.open("rb") as file:
        data = file.read(MAX_PASSPHRASE_FILE_BYTES + 1)
    if len(data) > MAX_PASSPHRASE_FILE_BYTES:
        raise InvalidInput(
            f"The passphrase file {path} is larger than {MAX_PASSPHRASE_FILE_BYTES // 1024} KiB; "
            "it cannot be a passphrase."
        )
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    try:
        passphrase = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("The passphrase file is not UTF-8 text.") from None
    if not passphrase:
        raise InvalidInput("The passphrase file is empty.")
    return passphrase


def prompt_passphrase(attempt: int) -> str:
    """Ask on the terminal without echo; `attempt` > 0 means the previous one was wrong."""
    try:
        return getpass.getpass(prompt_for_attempt("Passphrase: ", attempt))
    except EOFError:
        raise PassphraseRequired from None


def prompt_for_attempt(first: str, attempt: int) -> str:
    """The prompt for ask number `attempt`: `first`, then one saying the last was wrong."""
    return first if attempt == 0 else "Wrong passphrase, try again: "


def prompt_new_passphrase() -> str:
    """Ask for a new passphrase on the terminal without echo, twice, as `passwd` does.

    A typo in a passphrase nobody saw would lock the reader out for good, hence the second
    ask; a mismatch or an empty answer stops before anything is sent.
    """
    try:
        first = getpass.getpass("Passphrase for the secret: ")
        if not first:
            raise InvalidInput("The passphrase must not be empty; nothing was sent.")
        again = getpass.getpass("The same passphrase again: ")
    except EOFError:
        raise InvalidInput("No passphrase was typed; nothing was sent.") from None
    if again != first:
        raise InvalidInput("The two passphrases differ; nothing was sent.")
    return first
