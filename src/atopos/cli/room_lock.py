"""Extra Lock on the command line: the passphrase, and which room state file to use.

`plan_lock` turns the `join` options into a `LockPlan`: the link and display name to join
with and, under Extra Lock, the `LockedRoomState` that keeps the member's state (a new file,
or the one `--resume` opened). Without Extra Lock the plan holds no store and nothing is
written (client/rooms_lock.py has the file format).
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from pathlib import Path

from atopos.cli.passphrase import read_passphrase_file
from atopos.client.keystore import default_home
from atopos.client.rooms_lock import LockedRoomState, RoomState, WrongRoomPassphrase
from atopos.errors import InvalidInput, Refused
from atopos.randomness import system_random_bytes

__all__ = ["LockPlan", "ask_passphrase", "new_passphrase", "plan_lock", "save_creator_link"]


@dataclass(slots=True)
class LockPlan:
    link: str
    display_name: str
    store: LockedRoomState | None = None


def new_passphrase(passphrase_file: Path | None) -> str:
    """A new Extra Lock passphrase: from the file, or typed twice without echo."""
    if passphrase_file is not None:
        return read_passphrase_file(passphrase_file)
    try:
        first = getpass.getpass("Extra Lock passphrase for this room: ")
        again = getpass.getpass("The same passphrase again: ")
    except EOFError:
        raise InvalidInput("No passphrase was typed; nothing was done.") from None
    if not first:
        raise InvalidInput("The passphrase must not be empty; nothing was done.")
    if again != first:
        raise InvalidInput("The two passphrases differ; nothing was done.")
    return first


def ask_passphrase(passphrase_file: Path | None) -> str:
    """The passphrase of an existing room state: from the file, or typed once."""
    if passphrase_file is not None:
        return read_passphrase_file(passphrase_file)
    try:
        return getpass.getpass("Extra Lock passphrase: ")
    except EOFError:
        raise InvalidInput("No passphrase was typed; nothing was done.") from None


def save_creator_link(link: str, passphrase: str) -> None:
    """Keep a new room's creator link only under Extra Lock (for `join --resume`)."""
    store = LockedRoomState.create(default_home(), passphrase, system_random_bytes)
    store.save(RoomState(link, "", None))
    store.lock()


def plan_lock(
    link: str | None,
    display_name: str,
    is_locked: bool,
    resume: bool,
    passphrase_file: Path | None,
) -> LockPlan:
    """What `join` joins with, and where (if anywhere) it keeps the room's state."""
    if not is_locked:
        assert link is not None
        return LockPlan(link, display_name)
    home = default_home()
    if not resume:
        assert link is not None
        passphrase = new_passphrase(passphrase_file)
        store = LockedRoomState.create(home, passphrase, system_random_bytes)
        return LockPlan(link, display_name, store)
    passphrase = ask_passphrase(passphrase_file)
    for path in LockedRoomState.files(home):
        store = LockedRoomState(path, system_random_bytes)
        try:
            state = store.open(passphrase)
        except WrongRoomPassphrase:
            continue
        # The relay took the old connection's drop as a leave: the member joins again with
        # the saved link (new keys, no history), and the saved state is replaced.
        return LockPlan(state.link, display_name or state.display_name, store)
    raise Refused("No Extra Lock room state on this device opens with that passphrase.")
