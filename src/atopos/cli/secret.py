"""`atopos secret create | reveal | status | delete`.

stdout carries only what a script wants (the share link, the plaintext, status lines);
everything meant for the person at the terminal goes to stderr.
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from atopos.cli.context import global_options
from atopos.cli.output import HeldStream, OutputTarget, ProvisionalFile
from atopos.cli.passphrase import prompt_passphrase, read_passphrase_file
from atopos.cli.progress import TransferProgress
from atopos.cli.terminal import is_tty
from atopos.errors import InvalidInput, TooLarge

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="Share a secret by link; it is encrypted here.")

# Text from stdin is sealed in memory (its size goes into the envelope first); anything
# larger belongs in a file, which is streamed.
_MAX_STDIN_BYTES = 100 * 1024 * 1024
_READ_BYTES = 64 * 1024

PassphraseFile = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        exists=True,
        dir_okay=False,
        readable=True,
        help="File holding a passphrase (one trailing newline is ignored).",
    ),
]


@app.command()
def create(
    ctx: typer.Context,
    expires: Annotated[
        str, typer.Option("--expires", help="Lifetime: 30s, 10m, 1h, 7d, 2w.")
    ] = "1d",
    views: Annotated[int, typer.Option("--views", min=1, help="How many reveals.")] = 1,
    passphrase_file: PassphraseFile = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            exists=True,
            dir_okay=False,
            readable=True,
            help="Send this file instead of text from stdin.",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print {link, manage_link, expires_at} as JSON.")
    ] = False,
    bind_device: Annotated[
        str | None,
        typer.Option(
            "--bind-device",
            metavar="DEVICE_CODE",
            help="Only this device (its code from `atopos device show`) can reveal it.",
        ),
    ] = None,
) -> None:
    """Encrypt text from stdin (or --file) and print its share link."""
    from atopos.client.api import SecretsApi
    from atopos.client.device import parse_device_code_input
    from atopos.client.duration import parse_duration
    from atopos.client.secrets import create_secret

    expires_in = parse_duration(expires)
    device = parse_device_code_input(bind_device) if bind_device is not None else None
    passphrase = read_passphrase_file(passphrase_file) if passphrase_file else None
    # Connect (and so check --server) before the user types a secret that could not be sent.
    with SecretsApi(global_options(ctx).transport()) as api:
        content: bytes | Path = file if file is not None else _read_text_secret()
        with TransferProgress("Sending", enabled=file is not None and is_tty(sys.stderr)) as bar:
            created = create_secret(
                api,
                content,
                expires_in=expires_in,
                views=views,
                passphrase=passphrase,
                progress=bar.update,
                device=device,
            )
    if as_json:
        record = {
            "link": str(created.share_link),
            "manage_link": str(created.manage_link),
            "expires_at": created.expires_at,
        }
        typer.echo(json.dumps(record))
    else:
        typer.echo(str(created.share_link))
        typer.echo(f"Manage link (keep it private): {created.manage_link}", err=True)


@app.command()
def reveal(
    ctx: typer.Context,
    link: Annotated[str, typer.Argument(help="The share link: <server>/s/<id>#<key>.")],
    passphrase_file: PassphraseFile = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Write to this file, or into this directory under the sender's file name.",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    device_passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--device-passphrase-file",
            exists=True,
            dir_okay=False,
            readable=True,
            help="File holding this device's Extra Lock passphrase (for a bound secret).",
        ),
    ] = None,
) -> None:
    """Spend one view of a secret and print it (or save it with -o)."""
    from atopos.cli.device import device_loader
    from atopos.client.api import SecretsApi
    from atopos.client.links import parse_share_link
    from atopos.client.secrets import reveal_secret

    share_link = parse_share_link(link)
    passphrase = read_passphrase_file(passphrase_file) if passphrase_file else None
    # Every check that can fail locally runs before the view is spent.
    target = OutputTarget.resolve(output, overwrite=force) if output is not None else None
    may_prompt = passphrase is None and is_tty(sys.stdin)
    with SecretsApi(global_options(ctx).transport(share_link.server)) as api:
        if target is None:
            stdout = HeldStream(_binary_stdout())
            reveal_secret(
                api,
                share_link,
                stdout.write,
                passphrase=passphrase,
                ask_passphrase=prompt_passphrase if may_prompt else None,
                device=device_loader(device_passphrase_file),
            )
            stdout.release()
            return
        with (
            ProvisionalFile(target.directory) as provisional,
            TransferProgress("Receiving", enabled=is_tty(sys.stderr)) as bar,
        ):

            def ask_passphrase(attempt: int) -> str:
                with bar.paused():
                    return prompt_passphrase(attempt)

            metadata = reveal_secret(
                api,
                share_link,
                provisional.write,
                passphrase=passphrase,
                ask_passphrase=ask_passphrase if may_prompt else None,
                progress=bar.update,
                device=device_loader(device_passphrase_file, paused=bar.paused),
            )
            saved = provisional.commit(
                target.destination(metadata.kind, metadata.name), overwrite=target.overwrite
            )
    typer.echo(f"Saved to {saved}", err=True)


@app.command()
def status(
    ctx: typer.Context,
    manage_link: Annotated[str, typer.Argument(help="The manage link: <server>/m/<id>#<token>.")],
) -> None:
    """Show views left, expiry, kind and stored size of a secret."""
    from atopos.client.api import SecretsApi
    from atopos.client.links import parse_manage_link

    link = parse_manage_link(manage_link)
    with SecretsApi(global_options(ctx).transport(link.server)) as api:
        info = api.status(link.secret_id, link.manage_token)
    typer.echo(f"Views left: {info.views_left}")
    typer.echo(f"Expires at: {_local_time(info.expires_at)}")
    typer.echo(f"Kind: {info.kind}")
    typer.echo(f"Size: {info.size} bytes (encrypted and padded)")


@app.command()
def delete(
    ctx: typer.Context,
    manage_link: Annotated[str, typer.Argument(help="The manage link: <server>/m/<id>#<token>.")],
) -> None:
    """Delete a secret now, whatever views it has left."""
    from atopos.client.api import SecretsApi
    from atopos.client.links import parse_manage_link

    link = parse_manage_link(manage_link)
    with SecretsApi(global_options(ctx).transport(link.server)) as api:
        api.delete(link.secret_id, link.manage_token)
    typer.echo("The secret was deleted.", err=True)


def _read_text_secret() -> bytes:
    if sys.stdin is None:
        raise InvalidInput("There is no stdin to read the secret from; pipe it in or use --file.")
    if is_tty(sys.stdin):
        typer.echo("Type the secret, end with Ctrl-D", err=True)
    stdin = typer.get_binary_stream("stdin")
    data = bytearray()
    while piece := stdin.read(_READ_BYTES):
        data += piece
        if len(data) > _MAX_STDIN_BYTES:
            raise TooLarge(
                "Text from stdin is limited to 100 MiB; send larger secrets with --file."
            )
    if not data:
        raise InvalidInput("The secret is empty; type or pipe some text.")
    return bytes(data)


def _binary_stdout() -> BinaryIO:
    return typer.get_binary_stream("stdout")


def _local_time(timestamp: int) -> str:
    try:
        moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC).astimezone()
    except (OverflowError, OSError, ValueError):  # past year 9999, or before this OS's epoch
        return f"{timestamp} (seconds since 1970)"
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z")
