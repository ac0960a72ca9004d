"""`atopos device init | show | export-phrase | recover | wipe`.

The device is this machine's identity for device-bound secrets (docs/protocol/device.md).
stdout carries what a script wants (the device code, the phrase); everything meant for the
person at the terminal goes to stderr. Passphrases come from a file or a hidden prompt,
never from the command line.
"""

from __future__ import annotations

import contextlib
import getpass
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from atopos.cli.passphrase import prompt_for_attempt, read_passphrase_file
from atopos.cli.terminal import is_tty
from atopos.errors import InvalidInput
from atopos.randomness import system_random_bytes

if TYPE_CHECKING:
    from atopos.client.device import DeviceLoader
    from atopos.crypto.device import DeviceKeys

__all__ = ["app", "device_loader"]

app = typer.Typer(
    no_args_is_help=True,
    help="This device's keys: secrets bound to it open only here.",
)

_T = TypeVar("_T")
_MAX_PHRASE_BYTES = 4096

PassphraseFile = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        exists=True,
        dir_okay=False,
        readable=True,
        metavar="FILE",
        help="File holding the Extra Lock passphrase (one trailing newline is ignored).",
    ),
]
Force = Annotated[
    bool, typer.Option("--force", help="Replace the device this machine already has.")
]
ExtraLock = Annotated[
    bool,
    typer.Option(
        "--extra-lock",
        help="Wrap the device's seed with a passphrase: nothing on disk reveals it without.",
    ),
]


@app.command()
def init(
    extra_lock: ExtraLock = False, passphrase_file: PassphraseFile = None, force: Force = False
) -> None:
    """Make this machine's device keys and print its device code."""
    from atopos.client.keystore import DeviceExists, DeviceStore

    store = DeviceStore.from_environment()
    if store.has_device() and not force:
        raise DeviceExists
    passphrase = _extra_lock_passphrase(extra_lock, passphrase_file)
    public = store.save(system_random_bytes(32), passphrase=passphrase, replace=force)
    typer.echo(public.code)
    typer.echo(
        "Device created. Back it up with `atopos device export-phrase`: without the phrase, "
        "secrets bound to it are lost with this machine.",
        err=True,
    )


@app.command()
def show(
    qr: Annotated[
        bool, typer.Option("--qr/--no-qr", help="Also draw the code as a QR code on stderr.")
    ] = True,
) -> None:
    """Print this device's code (give it to whoever binds a secret to this device)."""
    from atopos.client.keystore import DeviceStore

    code = DeviceStore.from_environment().public().code
    typer.echo(code)
    if qr:
        _draw_qr(code)


@app.command("export-phrase")
def export_phrase(passphrase_file: PassphraseFile = None) -> None:
    """Print the 24-word recovery phrase of this device (it never leaves this machine)."""
    from atopos.client.keystore import DeviceStore
    from atopos.client.recovery import seed_to_phrase

    if sys.stdout is None:
        # click would drop the words silently and report success.
        raise InvalidInput("stdout is closed: there is nowhere to print the recovery phrase.")
    store = DeviceStore.from_environment()
    seed = _unlocked(store.is_extra_locked(), passphrase_file, "--passphrase-file", store.load_seed)
    typer.echo(
        "Anyone with these words can open secrets bound to this device; "
        "write them down and keep them offline.",
        err=True,
    )
    typer.echo(seed_to_phrase(seed))


@app.command()
def recover(
    extra_lock: ExtraLock = False, passphrase_file: PassphraseFile = None, force: Force = False
) -> None:
    """Restore a device from its recovery phrase (read from stdin or asked for)."""
    from atopos.client.keystore import DeviceExists, DeviceStore
    from atopos.client.recovery import phrase_to_seed

    store = DeviceStore.from_environment()
    if store.has_device() and not force:
        raise DeviceExists
    seed = phrase_to_seed(_read_phrase())
    passphrase = _extra_lock_passphrase(extra_lock, passphrase_file)
    public = store.save(seed, passphrase=passphrase, replace=force)
    typer.echo(public.code)
    typer.echo("Device recovered.", err=True)


@app.command()
def wipe(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete this device's keys and session state from this machine."""
    from atopos.client.keystore import DeviceStore

    store = DeviceStore.from_environment()
    if not yes and is_tty(sys.stdin) and store.has_device():
        confirmed = typer.confirm(
            "Delete this device? Secrets bound to it will no longer open here "
            "unless you kept its recovery phrase",
            default=False,
            err=True,
        )
        if not confirmed:
            raise typer.Exit(1)
    if store.wipe():
        typer.echo("This device was wiped.", err=True)
    else:
        typer.echo("There was no device to wipe.", err=True)


# -- used by `secret reveal` ---------------------------------------------------------------


def device_loader(
    passphrase_file: Path | None,
    paused: Callable[[], contextlib.AbstractContextManager[object]] | None = None,
) -> DeviceLoader:
    """A loader of this machine's device for `reveal_secret` (None when it has none).

    It runs only for a bound secret; `paused` wraps a passphrase prompt (a progress bar
    steps aside while it is asked).
    """

    def load() -> DeviceKeys | None:
        from atopos.client.keystore import DeviceStore, NoDevice

        store = DeviceStore.from_environment()
        try:
            is_extra_locked = store.is_extra_locked()
        except NoDevice:
            return None
        with paused() if paused is not None else contextlib.nullcontext():
            return _unlocked(
                is_extra_locked, passphrase_file, "--device-passphrase-file", store.load
            )

    return load


# -- helpers -------------------------------------------------------------------------------


def _unlocked(
    is_extra_locked: bool,
    passphrase_file: Path | None,
    option: str,
    load: Callable[[str | None], _T],
) -> _T:
    """`load(passphrase)`, with the Extra Lock passphrase from the file or the terminal
    (three tries there); ExtraLockRequired when neither can give one."""
    from atopos.client.envelope_reader import MAX_PASSPHRASE_ATTEMPTS
    from atopos.client.keystore import ExtraLockRequired, WrongExtraLockPassphrase

    if not is_extra_locked:
        return load(None)
    if passphrase_file is not None:
        return load(read_passphrase_file(passphrase_file))
    if not is_tty(sys.stdin):
        raise ExtraLockRequired(
            f"This device is protected by Extra Lock; pass {option} or run on a terminal."
        )
    for attempt in range(MAX_PASSPHRASE_ATTEMPTS):
        try:
            return load(_ask(prompt_for_attempt("Extra Lock passphrase: ", attempt)))
        except WrongExtraLockPassphrase:
            if attempt == MAX_PASSPHRASE_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _new_passphrase(passphrase_file: Path | None) -> str:
    if passphrase_file is not None:
        return read_passphrase_file(passphrase_file)
    if not is_tty(sys.stdin):
        raise InvalidInput("Extra Lock needs a passphrase: pass --passphrase-file.")
    first = _ask("New Extra Lock passphrase: ")
    if not first:
        raise InvalidInput("The passphrase must not be empty.")
    if _ask("Repeat the passphrase: ") != first:
        raise InvalidInput("The two passphrases differ; nothing was changed.")
    return first


def _extra_lock_passphrase(extra_lock: bool, passphrase_file: Path | None) -> str | None:
    if extra_lock:
        return _new_passphrase(passphrase_file)
    if passphrase_file is not None:
        raise InvalidInput("--passphrase-file is only used with --extra-lock.")
    return None


def _ask(prompt: str) -> str:
    try:
        return getpass.getpass(prompt)
    except EOFError:
        raise InvalidInput("No passphrase was typed.") from None


def _read_phrase() -> str:
    if sys.stdin is None:
        raise InvalidInput("There is no stdin to read the recovery phrase from.")
    if is_tty(sys.stdin):
        return _ask("Recovery phrase (24 words): ")
    data = sys.stdin.buffer.read(_MAX_PHRASE_BYTES + 1)
    if len(data) > _MAX_PHRASE_BYTES:
        raise InvalidInput("That is far too long for a recovery phrase.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("The recovery phrase is not UTF-8 text.") from None


def _draw_qr(code: str) -> None:
    import segno

    qr = segno.make(code, error="m")
    try:
        qr.terminal(out=sys.stderr, compact=True)
    except UnicodeEncodeError:  # a terminal without the half-block characters
        qr.terminal(out=sys.stderr)
