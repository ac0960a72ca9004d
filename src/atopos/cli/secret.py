"""`atopos secret create | reveal | request | fill | status | delete`.

stdout carries only what a script wants (the share link, the plaintext, status lines);
everything meant for the person at the terminal goes to stderr.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from atopos.cli.context import global_options
from atopos.cli.output import FALLBACK_FILE_NAME, HeldStream, OutputTarget, ProvisionalFile
from atopos.cli.passphrase import (
    prompt_new_passphrase,
    prompt_passphrase,
    read_passphrase_file,
)
from atopos.cli.progress import TransferProgress
from atopos.cli.terminal import has_terminal, is_tty
from atopos.cli.terminal_text import TerminalText
from atopos.client.links import ShareLink
from atopos.errors import InvalidInput, TooLarge

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="Share a secret by link; it is encrypted here.")

# Text from stdin is sealed in memory (its size goes into the envelope first); anything
# larger belongs in a file, which is streamed.
_MAX_STDIN_BYTES = 100 * 1024 * 1024
_READ_BYTES = 64 * 1024
# The server's shortest lifetime (server/secrets_api.py); anything shorter is refused there,
# so it is refused here before a passphrase or a secret is typed.
MIN_EXPIRES_SECONDS = 60
# Each `status --wait` request waits this long on the server (its cap: 15 s), then asks again.
_RECEIPT_WAIT_SECONDS = 15

PassphraseFile = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        exists=True,
        dir_okay=False,
        readable=True,
        metavar="FILE",
        help="File holding a passphrase (one trailing newline is ignored).",
    ),
]


@app.command()
def create(
    ctx: typer.Context,
    expires: Annotated[
        str,
        typer.Option(
            "--expires",
            metavar="DURATION",
            help="Lifetime: a number and s, m, h, d or w, like 10m, 1h, 7d or 2w; at least "
            "1m, at most 30d on a server with the default limits.",
        ),
    ] = "1d",
    views: Annotated[
        int,
        typer.Option(
            "--views",
            min=1,
            metavar="N",
            help="How many reveals: 1 to 100 on a server with the default limits.",
        ),
    ] = 1,
    ask_passphrase: Annotated[
        bool,
        typer.Option(
            "--passphrase",
            help="Ask for a passphrase on the terminal (hidden, twice); the reader needs it "
            "as well as the link.",
        ),
    ] = False,
    passphrase_file: PassphraseFile = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            exists=True,
            dir_okay=False,
            readable=True,
            metavar="FILE",
            help="Send this file instead of text from stdin: up to 100 MiB on a server with "
            "the default limits.",
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
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            metavar="K/N",
            help="Print N split links instead of one, any K of which open the secret "
            "(2 <= K <= N <= 10): send each over a different channel.",
        ),
    ] = None,
) -> None:
    """Encrypt text from stdin (or --file) and print its share link."""
    from atopos.client.api import SecretsApi
    from atopos.client.device import parse_device_code_input
    from atopos.client.duration import parse_duration
    from atopos.client.secrets import create_secret
    from atopos.client.split_links import parse_split, split_share_link
    from atopos.randomness import system_random_bytes

    if ask_passphrase and passphrase_file is not None:
        raise InvalidInput("Give --passphrase or --passphrase-file, not both.")
    expires_in = parse_duration(expires)
    if expires_in < MIN_EXPIRES_SECONDS:
        raise InvalidInput("A secret must live at least 1 minute; give --expires 1m or more.")
    device = parse_device_code_input(bind_device) if bind_device is not None else None
    split_into = parse_split(split) if split is not None else None
    passphrase = read_passphrase_file(passphrase_file) if passphrase_file else None
    if ask_passphrase and not has_terminal():
        raise InvalidInput(
            "--passphrase asks on a terminal and there is none; use --passphrase-file FILE."
        )
    # Check --server before the user types a passphrase or a secret that could not be sent.
    with SecretsApi(global_options(ctx).transport()) as api:
        if ask_passphrase:
            passphrase = prompt_new_passphrase()
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
    links = [str(created.share_link)]
    if split_into is not None:
        threshold, count = split_into
        parts = split_share_link(
            created.share_link,
            threshold=threshold,
            count=count,
            random_bytes=system_random_bytes,
        )
        links = [str(part) for part in parts]
    if as_json:
        record: dict[str, object] = {"link": links[0]} if split_into is None else {"links": links}
        record |= {"manage_link": str(created.manage_link), "expires_at": created.expires_at}
        typer.echo(json.dumps(record))
    else:
        for link in links:
            typer.echo(link)
        if split_into is not None:
            typer.echo(
                f"Any {split_into[0]} of these {split_into[1]} links open the secret; "
                "send each over a different channel.",
                err=True,
            )
        typer.echo(f"Manage link (keep it private): {created.manage_link}", err=True)


@app.command()
def reveal(
    ctx: typer.Context,
    links: Annotated[
        list[str],
        typer.Argument(
            metavar="LINK...",
            help=(
                "The share link (<server>/s/<id>#<key>), enough split links of one secret,"
                " or a pickup link (<server>/ask/<id>#...)."
            ),
        ),
    ],
    passphrase_file: PassphraseFile = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            metavar="PATH",
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
            metavar="FILE",
            help="File holding this device's Extra Lock passphrase (for a bound secret).",
        ),
    ] = None,
    no_stamp: Annotated[
        bool,
        typer.Option(
            "--no-stamp",
            help="Ask the server for a challenge first (two requests) instead of sending a "
            "stamp made with this machine's clock (one request).",
        ),
    ] = False,
) -> None:
    """Spend one view of a secret and print it (or save it with -o).

    A pickup link (from `atopos secret request`) first waits until the request is filled.
    """
    from atopos.cli.device import device_loader
    from atopos.client.api import SecretsApi
    from atopos.client.request_links import is_pickup_link
    from atopos.client.secrets import reveal_secret

    # A filled request's secret is bound to this device, which a stamp cannot prove: the
    # server would answer it with a challenge, so ask for that at once.
    is_pickup = len(links) == 1 and is_pickup_link(links[0])
    if is_pickup:
        links = [_wait_for_pickup(ctx, links[0])]
    share_link = _share_link_of(links)
    passphrase = read_passphrase_file(passphrase_file) if passphrase_file else None
    # Every check that can fail locally runs before the view is spent.
    target = OutputTarget.resolve(output, overwrite=force) if output is not None else None
    may_prompt = passphrase is None and is_tty(sys.stdin)
    with SecretsApi(global_options(ctx).transport(share_link.server)) as api:
        if target is None:
            _reveal_to_stdout(
                lambda write: reveal_secret(
                    api,
                    share_link,
                    write,
                    passphrase=passphrase,
                    ask_passphrase=prompt_passphrase if may_prompt else None,
                    device=device_loader(device_passphrase_file),
                    stamp=not (is_pickup or no_stamp),
                )
            )
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
                stamp=not (is_pickup or no_stamp),
            )
            saved = provisional.commit(
                target.destination(metadata.kind, metadata.name), overwrite=target.overwrite
            )
    typer.echo(f"Saved to {saved}", err=True)


@app.command()
def request(
    ctx: typer.Context,
    expires: Annotated[
        str,
        typer.Option(
            "--expires",
            metavar="DURATION",
            help="How long the request stays open, and the secret then lives: like 10m, 1h "
            "or 7d; at least 1m, at most 30d on a server with the default limits.",
        ),
    ] = "1d",
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Wait until it is filled, then reveal it (like reveal)."),
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            metavar="PATH",
            help="With --wait: write to this file, or into this directory.",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print {request_link, pickup_link, expires_at} as JSON."),
    ] = False,
    device_passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--device-passphrase-file",
            exists=True,
            dir_okay=False,
            readable=True,
            metavar="FILE",
            help="File holding this device's Extra Lock passphrase (with --wait).",
        ),
    ] = None,
    cancel: Annotated[
        str | None,
        typer.Option(
            "--cancel",
            metavar="PICKUP_LINK",
            help="Close this pickup link's request instead, while nobody has filled it.",
        ),
    ] = None,
) -> None:
    """Ask someone for a secret: print a request link they fill in a browser.

    The secret is sealed to this device and opens only here. Reveal it with --wait, or
    later with `atopos secret reveal PICKUP_LINK` (the pickup link is printed on stderr);
    close an unfilled request with --cancel PICKUP_LINK.
    """
    from atopos.client.api import SecretsApi
    from atopos.client.duration import parse_duration
    from atopos.client.keystore import DeviceStore
    from atopos.client.secret_requests import open_request

    if cancel is not None:
        if wait or output is not None or as_json or device_passphrase_file is not None:
            raise InvalidInput("--cancel takes only the pickup link; it opens nothing new.")
        _cancel_request(ctx, cancel)
        return
    expires_in = parse_duration(expires)
    if expires_in < MIN_EXPIRES_SECONDS:
        raise InvalidInput("A request must live at least 1 minute; give --expires 1m or more.")
    if output is not None and not wait:
        raise InvalidInput("-o needs --wait: without it nothing is revealed now.")
    device = DeviceStore.from_environment().public()
    with SecretsApi(global_options(ctx).transport()) as api:
        opened = open_request(api, device, expires_in=expires_in)
    if as_json:
        record = {
            "request_link": str(opened.request_link),
            "pickup_link": str(opened.pickup_link),
            "expires_at": opened.expires_at,
        }
        typer.echo(json.dumps(record))
    else:
        typer.echo(str(opened.request_link))
        typer.echo(
            f"Pickup link (keep it private; it opens only on this device): {opened.pickup_link}",
            err=True,
        )
    if wait:
        sys.stdout.flush()
        reveal(
            ctx,
            [str(opened.pickup_link)],
            passphrase_file=None,
            output=output,
            force=force,
            device_passphrase_file=device_passphrase_file,
        )


def _cancel_request(ctx: typer.Context, text: str) -> None:
    from atopos.client.api import SecretsApi
    from atopos.client.request_links import parse_pickup_link
    from atopos.client.secret_requests import cancel_request

    pickup = parse_pickup_link(text)
    with SecretsApi(global_options(ctx).transport(pickup.server)) as api:
        cancel_request(api, pickup)
    typer.echo("Cancelled: the request link fills nothing any more.", err=True)


@app.command()
def fill(
    ctx: typer.Context,
    link: Annotated[
        str,
        typer.Argument(
            metavar="REQUEST_LINK", help="The request link: <server>/q/<id>#<key>.<device code>."
        ),
    ],
    file: Annotated[
        Path | None,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            metavar="[FILE]",
            help="Send this file (streamed) instead of text from stdin.",
        ),
    ] = None,
) -> None:
    """Fill in a request link with a file, or with text from stdin.

    It is sealed to the requester's device, named in the link: only it can open it.
    """
    from atopos.client.api import SecretsApi
    from atopos.client.request_links import parse_request_link
    from atopos.client.secret_requests import fill_request

    request = parse_request_link(link)
    content: bytes | Path = file if file is not None else _read_text_secret()
    with SecretsApi(global_options(ctx).transport(request.server)) as api:
        fill_request(api, request, content)
    typer.echo("Sent: only the device that asked for it can open it, once.", err=True)


def _wait_for_pickup(ctx: typer.Context, text: str) -> str:
    """Wait until the pickup link's request is filled; the filled secret's share link."""
    from atopos.client.api import SecretsApi
    from atopos.client.request_links import parse_pickup_link
    from atopos.client.secret_requests import wait_for_fill

    pickup = parse_pickup_link(text)
    waited: list[bool] = []

    def say_waiting() -> None:
        waited.append(True)
        typer.echo(
            "Waiting for the secret to be filled in (Ctrl-C stops waiting; the pickup link "
            "keeps working).",
            err=True,
        )

    with SecretsApi(global_options(ctx).transport(pickup.server)) as api:
        share_link = wait_for_fill(api, pickup, on_waiting=say_waiting)
    if waited:
        typer.echo("The secret arrived.", err=True)
    return str(share_link)


@app.command()
def status(
    ctx: typer.Context,
    manage_link: Annotated[
        str,
        typer.Argument(metavar="MANAGE_LINK", help="The manage link: <server>/m/<id>#<token>."),
    ],
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Then wait until the next view is spent (exit 0) or the secret expires or is "
            "deleted (exit 3).",
        ),
    ] = False,
) -> None:
    """Show views left, expiry, kind, stored size and when each view was spent."""
    from atopos.client.api import SecretsApi
    from atopos.client.links import parse_manage_link
    from atopos.errors import Gone, RateLimited

    link = parse_manage_link(manage_link)
    with SecretsApi(global_options(ctx).transport(link.server)) as api:
        try:
            info = api.status(link.secret_id, link.manage_token)
        except Gone:
            # Its last view burned it: the receipts are kept until it would have expired.
            receipts = api.receipts(link.secret_id, link.manage_token)
            typer.echo("Views left: 0 (every view was spent; the secret is gone)")
            typer.echo(f"Expires at: {_local_time(receipts.expires_at)}")
            viewed_at = receipts.viewed_at
        else:
            typer.echo(f"Views left: {info.views_left}")
            typer.echo(f"Expires at: {_local_time(info.expires_at)}")
            typer.echo(f"Kind: {info.kind}")
            typer.echo(f"Size: {info.size} bytes (encrypted and padded)")
            viewed_at = info.viewed_at
        _echo_views(viewed_at)
        if not wait:
            return
        typer.echo("Waiting for the next view (Ctrl-C to stop)...", err=True)
        seen = len(viewed_at)
        while True:
            try:
                receipts = api.receipts(
                    link.secret_id, link.manage_token, seen=seen, wait=_RECEIPT_WAIT_SECONDS
                )
            except Gone:
                raise Gone(
                    "The secret expired or was deleted before another view was spent."
                ) from None
            except RateLimited as limited:
                # A node whose waits are all taken answers at once, and asking again that
                # fast meets the manage rate limit: wait it out rather than give up.
                time.sleep(min(limited.retry_after, _RECEIPT_WAIT_SECONDS))
                continue
            if len(receipts.viewed_at) > seen:
                _echo_views(receipts.viewed_at[seen:])
                return


def _echo_views(viewed_at: Sequence[int]) -> None:
    """One line a view, to the minute (the server keeps nothing finer)."""
    for minute in viewed_at:
        typer.echo(f"Viewed at: {_local_time(minute, with_seconds=False)}")


@app.command()
def delete(
    ctx: typer.Context,
    manage_link: Annotated[
        str,
        typer.Argument(metavar="MANAGE_LINK", help="The manage link: <server>/m/<id>#<token>."),
    ],
) -> None:
    """Delete a secret now, whatever views it has left."""
    from atopos.client.api import SecretsApi
    from atopos.client.links import parse_manage_link

    link = parse_manage_link(manage_link)
    with SecretsApi(global_options(ctx).transport(link.server)) as api:
        api.delete(link.secret_id, link.manage_token)
    typer.echo("The secret was deleted.", err=True)


def _share_link_of(texts: list[str]) -> ShareLink:
    """The share link that the LINK arguments stand for; on a terminal, asks for the split
    links still missing. No request is made before the key is whole, so nothing is spent."""
    from atopos.client.links import parse_reveal_link
    from atopos.client.split_links import MoreSharesNeeded, combine_share_links

    links = [parse_reveal_link(text) for text in texts]
    while True:
        try:
            return combine_share_links(links)
        except MoreSharesNeeded as needed:
            if not is_tty(sys.stdin):
                raise
            typer.echo(needed.message, err=True)
            pasted = typer.prompt(
                f"Paste another split link ({needed.missing} more needed)",
                hide_input=True,
                err=True,
            )
            links.append(parse_reveal_link(pasted))


def _reveal_to_stdout(reveal: Callable[[Callable[[bytes], None]], object]) -> None:
    """Run `reveal` with stdout as its destination: the exact bytes for a pipe or a file;
    for a terminal, text with its control characters made visible, and content that is not
    text saved as a file in the current directory instead of dumped on the screen.

    Whether a secret is text shows only in its plaintext, after its view is spent (the
    server does not say before): so it is saved rather than thrown away.
    """
    stdout = _binary_stdout()
    if not is_tty(sys.stdout):
        held = HeldStream(stdout)
        reveal(held.write)
        held.release()
        return
    with contextlib.ExitStack() as cleanup:
        saved_here: list[ProvisionalFile] = []

        def save_here() -> ProvisionalFile:
            try:
                saved_here.append(cleanup.enter_context(ProvisionalFile(Path.cwd())))
            except OSError as error:
                raise InvalidInput(
                    "The secret is not text, so it was not printed on the terminal, and it "
                    f"could not be saved in the current directory ({error.strerror}); its "
                    "view is spent, so ask the sender for a new link and use -o PATH."
                ) from None
            return saved_here[0]

        terminal = TerminalText(stdout, divert=save_here)
        held = HeldStream(terminal)
        reveal(held.write)
        held.release()
        if not saved_here:
            return
        saved = saved_here[0].commit(Path.cwd() / FALLBACK_FILE_NAME, overwrite=False)
    raise InvalidInput(
        f"The secret is not text, so it was not printed on the terminal; it was saved to "
        f"{saved} instead (choose where with -o PATH)."
    )


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


def _local_time(timestamp: int, *, with_seconds: bool = True) -> str:
    try:
        moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC).astimezone()
    except (OverflowError, OSError, ValueError):  # past year 9999, or before this OS's epoch
        return f"{timestamp} (seconds since 1970)"
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z" if with_seconds else "%Y-%m-%d %H:%M %Z")
