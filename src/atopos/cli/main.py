"""The `atopos` command: the root app, global options, and the one error boundary.

`run()` runs the app so that no exception escapes as a traceback: Atopos and crypto
errors become one sentence on stderr and the exit code of `cli/exits.py`; click's usage
errors become one sentence too and exit 2; Ctrl-C exits 130 quietly; anything else is a bug,
named by its exception type only (its message could hold secret material) with exit 70.
`ATOPOS_DEBUG=1` adds the traceback above that line, for whoever is debugging.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from typer.exceptions import TyperException

from atopos import __version__
from atopos.cli import device, mix, room, secret
from atopos.cli.context import DEFAULT_SERVER, GlobalOptions, tor_proxy
from atopos.cli.exits import ExitCode, describe, exit_code_for
from atopos.cli.global_options import GlobalValues, accept_after_commands
from atopos.cli.pin import pin
from atopos.cli.serve import serve
from atopos.errors import InvalidInput

__all__ = ["ENV_DEBUG", "app", "main", "run"]

ENV_DEBUG = "ATOPOS_DEBUG"

app = typer.Typer(
    name="atopos",
    help="Self-hostable one-time secrets, encrypted on your device.",
    no_args_is_help=True,
    add_completion=False,
    # Typer's pretty tracebacks can show local variables, which may hold keys.
    pretty_exceptions_enable=False,
)
app.command()(serve)
app.add_typer(secret.app, name="secret")
app.add_typer(device.app, name="device")
app.add_typer(room.app, name="room")
app.add_typer(mix.app, name="mix")
app.command()(pin)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"atopos {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    server: Annotated[
        str,
        typer.Option(
            "--server",
            envvar="ATOPOS_SERVER",
            metavar="URL",
            help="Server for `secret create` (links carry their own server). "
            "Also accepted after the command.",
        ),
    ] = DEFAULT_SERVER,
    pin_spki: Annotated[
        str | None,
        typer.Option(
            "--pin-spki",
            envvar="ATOPOS_PIN_SPKI",
            metavar="PIN",
            help="Talk only to a server holding this key: sha256/<base64> from `atopos pin`; "
            "several pins separated by commas. Applies to every server, links' included.",
        ),
    ] = None,
    ca_file: Annotated[
        Path | None,
        typer.Option(
            "--ca-file",
            envvar="ATOPOS_CA_FILE",
            exists=True,
            dir_okay=False,
            readable=True,
            metavar="FILE",
            help="Trust only the CAs in this PEM file for https servers.",
        ),
    ] = None,
    tor: Annotated[
        bool,
        typer.Option(
            "--tor",
            help="Reach every server through Tor (socks5h, names resolved by Tor), never "
            "directly: the SOCKS proxy in ATOPOS_TOR (setting it also turns this on), "
            "default socks5h://127.0.0.1:9050. Also accepted after the command.",
        ),
    ] = False,
    mixnet: Annotated[
        Path | None,
        typer.Option(
            "--mixnet",
            envvar="ATOPOS_MIXNET",
            exists=True,
            dir_okay=False,
            readable=True,
            metavar="TOPOLOGY",
            help="Reach the server through the mixnet this signed topology describes (its "
            "exit service asks the server); the authority key in --mix-authority. "
            "Also accepted after the command.",
        ),
    ] = None,
    mix_authority: Annotated[
        str | None,
        typer.Option(
            "--mix-authority",
            envvar="ATOPOS_MIX_AUTHORITY",
            metavar="KEY",
            help="The mixnet topology authority's Ed25519 public key (base64url).",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    # The global options may also come after the command (cli/global_options.py): they are
    # put in force by _put_in_force once the command's own options are parsed.
    pass


def _put_in_force(ctx: typer.Context, values: GlobalValues) -> None:
    """Apply the global options (merged from before and after the command) to `ctx`."""
    server, pin_spki, ca_file = values["server"], values["pin_spki"], values["ca_file"]
    pins: tuple[bytes, ...] = ()
    if pin_spki is not None:
        # Imported here: cryptography is slow to load and most runs do not need it.
        from atopos.client.pinning import parse_pins

        pins = parse_pins(pin_spki)
    proxy = tor_proxy(is_requested=bool(values["tor"]), environ=os.environ)
    mixnet, mix_authority = values["mixnet"], values["mix_authority"]
    if mixnet is not None and (proxy is not None or pins):
        raise InvalidInput("--mixnet cannot be combined with --tor or --pin-spki.")
    ctx.obj = GlobalOptions(
        server=server,
        ca_file=ca_file,
        pins=pins,
        proxy=proxy,
        mixnet=mixnet,
        mix_authority=mix_authority,
    )


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv) and return its exit code.

    The one error boundary: whatever happens, at most one line reaches stderr from here.
    """
    try:
        # standalone_mode=False: click's errors come here instead of being printed by click
        # as a usage block; typer still turns Ctrl-C into Exit(130) and returns Exit codes.
        command = typer.main.get_command(app)
        assert isinstance(command, typer.core.TyperGroup)
        accept_after_commands(command, _put_in_force)
        result = command.main(
            args=list(argv) if argv is not None else None,
            prog_name="atopos",
            standalone_mode=False,
        )
    except SystemExit as exit_request:
        return _exit_status(exit_request.code)
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except TyperException as error:  # click's errors, as typer (which vendors click) has them
        return _usage_error(error)
    except typer.Abort as error:  # end of input at a typer prompt
        _debug_traceback(error)
        _say("Error: No answer was given; nothing was done.")
        return ExitCode.FAILURE
    except BaseException as error:  # the backstop: never a traceback unless asked for
        _debug_traceback(error)
        _say(f"Error: {describe(error)}")
        return exit_code_for(error)
    return result if isinstance(result, int) else ExitCode.OK


def main() -> None:
    code = run()
    # Flushed here, not at interpreter exit: a reader that went away (`| head`) then costs
    # an exit code instead of an "Exception ignored" report on stderr.
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except OSError:
        _silence_stdout()
        code = code or ExitCode.FAILURE
    sys.exit(code)


def _exit_status(code: str | int | None) -> int:
    if code is None:
        return ExitCode.OK
    if isinstance(code, int):
        return code
    _say(f"Error: {code}")
    return ExitCode.FAILURE


def _say(line: str) -> None:
    """Write `line` to stderr as exactly one line, however it was made.

    A path or a server's words may carry a newline or a terminal escape; each control
    character is shown escaped instead. Nothing is raised if stderr itself is gone.
    """
    text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in line)
    with contextlib.suppress(Exception):
        if sys.stderr is not None:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()


def _is_debugging() -> bool:
    return os.environ.get(ENV_DEBUG, "").strip().lower() in ("1", "true", "yes", "on")


def _debug_traceback(error: BaseException) -> None:
    # Only on request: a traceback quotes exception messages, which may hold secrets.
    if _is_debugging():
        with contextlib.suppress(Exception):
            traceback.print_exception(error, file=sys.stderr)


def _usage_error(error: TyperException) -> int:
    """One line for a usage error (bad option, missing argument, unreadable --file...)
    instead of click's usage block."""
    if type(error).__name__ == "NoArgsIsHelpError":
        return ExitCode.USAGE  # the help was printed already (`atopos device` alone)
    _debug_traceback(error)
    message = error.format_message().rstrip(".")
    context = getattr(error, "ctx", None)
    command = getattr(context, "command_path", None)
    hint = f" (see `{command} --help`)" if isinstance(command, str) else ""
    _say(f"Error: {message}{hint}.")
    # click gives usage errors 2, which is ours too; its other errors 1, a local problem.
    code = getattr(error, "exit_code", ExitCode.USAGE)
    return code if isinstance(code, int) else ExitCode.USAGE


def _silence_stdout() -> None:
    # Python's advice for SIGPIPE: point stdout at devnull so the final flush cannot fail.
    with contextlib.suppress(Exception):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
