"""`atopos room create` and `atopos room join` (docs/cli.md, "Rooms").

`create` draws the room's secrets here, pays the proof of work and prints the links, each on
its own labelled line. `join` runs the terminal UI (cli/room_tui.py) or, with `--script`,
the JSON-lines driver (cli/room_script.py). Without `--extra-lock` nothing about a room is
written to this device. Exit codes: 3 the room has ended or never existed, 4 refused (bad
link or used invite, not admitted), 5 network.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from atopos.cli.context import global_options
from atopos.errors import Gone, InvalidInput

__all__ = ["app", "create", "join"]

app = typer.Typer(help="Ephemeral end-to-end encrypted group rooms.", no_args_is_help=True)


@app.command()
def create(
    ctx: typer.Context,
    ttl: Annotated[
        str,
        typer.Option("--ttl", metavar="DURATION", help="Lifetime: 10m, 2h, 7d (60 s to 7 days)."),
    ] = ("2h"),
    extra_lock: Annotated[
        bool,
        typer.Option(
            "--extra-lock",
            help="Keep the creator link only under a passphrase on this device (resume it "
            "with `room join --resume`) instead of printing it.",
        ),
    ] = False,
    knock: Annotated[
        bool, typer.Option("--knock", help="Members admit or refuse each joiner.")
    ] = False,
    invites: Annotated[
        int,
        typer.Option(
            "--invites", min=0, max=100, metavar="N", help="Single-use invite links to print."
        ),
    ] = 0,
    name: Annotated[
        str | None,
        typer.Option("--name", metavar="NAME", help="The room's name (sent only encrypted)."),
    ] = None,
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--passphrase-file", metavar="FILE", help="Extra Lock passphrase from this file."
        ),
    ] = None,
) -> None:
    """Create a room and print its links."""
    from atopos.cli.room_lock import new_passphrase, save_creator_link
    from atopos.client.duration import parse_duration
    from atopos.client.rooms_creation import create_room
    from atopos.protocol.room_creation import MAX_TTL_SECONDS, MIN_TTL_SECONDS
    from atopos.randomness import system_random_bytes

    seconds = parse_duration(ttl)
    if not MIN_TTL_SECONDS <= seconds <= MAX_TTL_SECONDS:
        raise InvalidInput("A room lives between 1 minute and 7 days (--ttl 60s … 7d).")
    passphrase = new_passphrase(passphrase_file) if extra_lock else None
    transport = global_options(ctx).transport()
    created = asyncio.run(
        create_room(
            transport, system_random_bytes, ttl=seconds, knock=knock, invites=invites, name=name
        )
    )
    new = created.new
    typer.echo(f"Room link (share it with the people you invite): {new.member_link.text()}")
    if passphrase is None:
        typer.echo(f"Creator link (keep it; it also ends the room): {new.creator_link.text()}")
    else:
        save_creator_link(new.creator_link.text(), passphrase)
        typer.echo("Creator link: kept under Extra Lock; join with `atopos room join --resume`.")
    for number, link in enumerate(new.invite_links, start=1):
        typer.echo(f"Invite link {number} (single use): {link.text()}")


@app.command()
def join(
    ctx: typer.Context,
    link: Annotated[
        str | None, typer.Argument(metavar="LINK", help="The room, creator or invite link.")
    ] = None,
    name: Annotated[
        str,
        typer.Option("--name", metavar="NAME", help="Your display name in this room (encrypted)."),
    ] = "",
    script: Annotated[
        bool,
        typer.Option("--script", help="Read lines from stdin, print events as JSON lines."),
    ] = False,
    extra_lock: Annotated[
        bool,
        typer.Option(
            "--extra-lock",
            help="Keep this room's state under a passphrase so it survives a restart; the "
            "window locks itself when idle.",
        ),
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Open the Extra Lock room state on this device.")
    ] = False,
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--passphrase-file", metavar="FILE", help="Extra Lock passphrase from this file."
        ),
    ] = None,
    idle_lock: Annotated[
        int,
        typer.Option(
            "--idle-lock", min=10, metavar="SECONDS", help="Seconds idle before the window locks."
        ),
    ] = 300,
) -> None:
    """Join a room: a terminal window, or JSON lines with --script."""
    from atopos.cli.room_lock import LockPlan, plan_lock
    from atopos.client.rooms import RoomOutcome

    if (link is None) == (not resume):
        raise InvalidInput("Give a room link, or --resume to open the Extra Lock room state.")
    plan: LockPlan = plan_lock(link, name, extra_lock or resume, resume, passphrase_file)
    transport = global_options(ctx).transport()
    if script:
        from atopos.cli.room_session import run_script_session

        outcome, failure = asyncio.run(run_script_session(transport, plan))
    else:
        from atopos.cli.room_tui import run_tui

        outcome, failure = run_tui(transport, plan, idle_lock)
    if failure is not None and outcome not in (RoomOutcome.LEFT, RoomOutcome.ENDED):
        raise failure
    if outcome is RoomOutcome.GONE:
        raise Gone("This room has ended or never existed.")
