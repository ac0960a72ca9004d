"""The `atopos` command: the root app, global options, and the one error boundary.

`main()` runs the app so that no exception escapes as a traceback: Atopos and crypto
errors become one sentence on stderr and the exit code of `cli/exits.py`; Ctrl-C exits 130
quietly; typer's own usage errors keep their message and exit 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from atopos import __version__
from atopos.cli import device, secret
from atopos.cli.context import DEFAULT_SERVER, GlobalOptions
from atopos.cli.exits import ExitCode, describe, exit_code_for
from atopos.cli.pin import pin
from atopos.cli.serve import serve

__all__ = ["app", "main", "run"]

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
            help="Server for `secret create` (links carry their own server).",
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
            help="Trust only the CAs in this PEM file for https servers.",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    pins: tuple[bytes, ...] = ()
    if pin_spki is not None or ca_file is not None:
        # Imported here: cryptography and httpx are slow to load and most runs need neither.
        from atopos.client.http import TlsPolicy, use_tls_policy
        from atopos.client.pinning import parse_pins

        pins = parse_pins(pin_spki) if pin_spki is not None else ()
        ctx.with_resource(use_tls_policy(TlsPolicy(ca_file=ca_file, pins=pins)))
    ctx.obj = GlobalOptions(server=server, ca_file=ca_file, pin_spki=pins)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv) and return its exit code."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="atopos")
    except SystemExit as exit_request:
        return _exit_status(exit_request.code)
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except Exception as error:
        sys.stderr.write(f"Error: {describe(error)}\n")
        return exit_code_for(error)
    return ExitCode.OK


def main() -> None:
    sys.exit(run())


def _exit_status(code: str | int | None) -> int:
    if code is None:
        return ExitCode.OK
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")
    return ExitCode.FAILURE
