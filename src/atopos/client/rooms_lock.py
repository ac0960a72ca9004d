"""Extra Lock for rooms: a member's resumable state, on disk only under a passphrase.

Without Extra Lock nothing about a room is ever written (the session lives in memory). With
it, one file per joined room under `ATOPOS_HOME/rooms/` holds (format in
docs/protocol/room-state.md):

    u32(len(key_record)) || key_record || state_record

`key_record` is a crypto/lock.py mode-1 record (Argon2id(passphrase) + AES-256-GCM) of a
random 32-byte *file key*; `state_record` is a mode-2 record (AES-256-GCM under the file
key) of the serialised state. Argon2id runs once per unlock, not once per save, so the
state can be rewritten after every frame without a half-second stall. The file's name is
random: it says nothing about the room. Leaving or panicking overwrites it with zeros and
unlinks it, as the device store does.

The state is the link, the display name and the `RoomMember` itself (its keys, ratchets and
roster), pickled with a table that turns key objects into their raw bytes. Unpickling runs
only on bytes that passed AES-GCM under a key derived from the passphrase, and even then
only classes of the room protocol may be built (`_RoomUnpickler.find_class`).
"""

from __future__ import annotations

import contextlib
import copyreg
import hashlib
import hmac
import io
import os
import pickle
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atopos.client.keystore import _private_directory, _shred, write_private_file
from atopos.client.local_files import open_without_waiting
from atopos.crypto.errors import DecryptionFailed
from atopos.crypto.kdf import Argon2Params
from atopos.crypto.lock import (
    EXTRA_LOCK_ARGON2,
    LOCK_KEY_BYTES,
    lock_with_key,
    lock_with_passphrase,
    unlock,
)
from atopos.crypto.randomness import RandomBytes, draw
from atopos.crypto.room_keys import MemberKeys
from atopos.errors import AtoposError, Refused
from atopos.protocol.room_member import RoomMember

__all__ = [
    "KEY_PURPOSE",
    "ROOMS_DIRECTORY",
    "STATE_PURPOSE",
    "LockedRoomState",
    "RoomState",
    "RoomStateReplaced",
    "WrongRoomPassphrase",
    "dump_member",
    "load_member",
]

ROOMS_DIRECTORY = "rooms"
KEY_PURPOSE = "atopos/room-state/v1/file-key"
STATE_PURPOSE = "atopos/room-state/v1/state"
_SUFFIX = ".lock"
_LENGTH = struct.Struct(">I")
_MAX_FILE_BYTES = 64 * 1024 * 1024
_ALLOWED_MODULES = (
    "atopos.protocol.room_",
    "atopos.crypto.room_",
)
_ALLOWED_CLASSES = frozenset({("collections", "OrderedDict"), ("builtins", "set")})


class WrongRoomPassphrase(Refused):
    def __init__(self) -> None:
        super().__init__("The Extra Lock passphrase is wrong, or the room state was altered.")


class RoomStateReplaced(WrongRoomPassphrase):
    """The file is not the one this process last wrote: an older copy put back would rewind
    the member's sending chains, and its next messages would reuse keys and nonces."""

    def __init__(self) -> None:
        Refused.__init__(
            self,
            "The room state file changed while the room was locked (an older or different "
            "copy is in its place); it was not opened. Leave the room and join again.",
        )


@dataclass(slots=True)
class RoomState:
    """What resuming needs: the link text, the display name, the member (keys, ratchets)."""

    link: str
    display_name: str
    member: RoomMember | None


class _RoomPickler(pickle.Pickler):
    dispatch_table = copyreg.dispatch_table.copy()
    dispatch_table[MemberKeys] = lambda keys: (MemberKeys, keys.private_bytes())


class _RoomUnpickler(pickle.Unpickler):
    def find_class(self, module_name: str, name: str) -> Any:
        if module_name.startswith(_ALLOWED_MODULES) or (module_name, name) in _ALLOWED_CLASSES:
            return super().find_class(module_name, name)
        raise pickle.UnpicklingError("not a room state")


def dump_member(state: RoomState) -> bytes:
    """The state as bytes (its randomness source is not part of it)."""
    member = state.member
    saved_random = None if member is None else member._random
    try:
        if member is not None:
            member._random = None  # type: ignore[assignment]
        buffer = io.BytesIO()
        _RoomPickler(buffer, protocol=5).dump((state.link, state.display_name, member))
        return buffer.getvalue()
    finally:
        if member is not None and saved_random is not None:
            member._random = saved_random


def load_member(data: bytes, random_bytes: RandomBytes) -> RoomState:
    """The state `dump_member` wrote, with `random_bytes` as the member's randomness."""
    try:
        link, display_name, member = _RoomUnpickler(io.BytesIO(data)).load()
    except Exception:
        raise DecryptionFailed from None
    if not isinstance(link, str) or not isinstance(display_name, str):
        raise DecryptionFailed
    if member is not None:
        if not isinstance(member, RoomMember):
            raise DecryptionFailed
        member._random = random_bytes
    return RoomState(link, display_name, member)


class LockedRoomState:
    """One room's Extra Lock file: created with a passphrase, rewritten under the file key
    while unlocked, forgotten from memory by `lock`, wiped by `wipe`."""

    def __init__(self, path: Path, random_bytes: RandomBytes) -> None:
        self.path = path
        self._random = random_bytes
        self._file_key: bytes | None = None
        self._key_record: bytes | None = None
        # The hash of what this process last wrote or opened: `open` refuses anything else
        # (a copy saved earlier and put back while the room was locked).
        self._last_seen: bytes | None = None

    @classmethod
    def create(
        cls,
        home: Path,
        passphrase: str,
        random_bytes: RandomBytes,
        *,
        params: Argon2Params = EXTRA_LOCK_ARGON2,
    ) -> LockedRoomState:
        """A new state file with a random name and a random file key locked by `passphrase`
        (nothing is written until the first `save`)."""
        directory = _private_directory(home / ROOMS_DIRECTORY)
        name = draw(random_bytes, 16).hex()
        state = cls(directory / f"{name}{_SUFFIX}", random_bytes)
        state._file_key = draw(random_bytes, LOCK_KEY_BYTES)
        state._key_record = lock_with_passphrase(
            state._file_key,
            passphrase,
            purpose=KEY_PURPOSE,
            random_bytes=random_bytes,
            params=params,
        )
        return state

    @staticmethod
    def files(home: Path) -> list[Path]:
        """The Extra Lock room files under `home`, oldest name first."""
        directory = home / ROOMS_DIRECTORY
        if not directory.is_dir():
            return []
        return sorted(p for p in directory.iterdir() if p.name.endswith(_SUFFIX))

    @property
    def is_unlocked(self) -> bool:
        return self._file_key is not None

    def save(self, state: RoomState) -> None:
        """Rewrite the file with `state`, locked (needs the file key: unlocked)."""
        if self._file_key is None or self._key_record is None:
            raise AtoposError("The room state is locked; unlock it first.")
        sealed = lock_with_key(
            dump_member(state), self._file_key, purpose=STATE_PURPOSE, random_bytes=self._random
        )
        data = _LENGTH.pack(len(self._key_record)) + self._key_record + sealed
        write_private_file(self.path, data)
        self._last_seen = hashlib.sha256(data).digest()

    def lock(self) -> None:
        """Forget the file key: nothing in memory opens the file until `open` again."""
        self._file_key = None

    def open(self, passphrase: str) -> RoomState:
        """Unlock the file with `passphrase`: the state, and the file key kept for `save`."""
        try:
            data = _read_regular_file(self.path)
        except FileNotFoundError:
            raise AtoposError("The room state file is gone.") from None
        except OSError:
            raise WrongRoomPassphrase from None  # not a file we wrote: nothing opens it
        digest = hashlib.sha256(data).digest()
        if self._last_seen is not None and not hmac.compare_digest(digest, self._last_seen):
            raise RoomStateReplaced
        try:
            if len(data) < _LENGTH.size:
                raise DecryptionFailed
            (size,) = _LENGTH.unpack_from(data)
            key_record = data[_LENGTH.size : _LENGTH.size + size]
            sealed = data[_LENGTH.size + size :]
            file_key = unlock(key_record, purpose=KEY_PURPOSE, passphrase=passphrase)
            state = load_member(unlock(sealed, purpose=STATE_PURPOSE, key=file_key), self._random)
        except DecryptionFailed:
            raise WrongRoomPassphrase from None
        self._file_key, self._key_record = file_key, key_record
        self._last_seen = digest
        return state

    def wipe(self) -> None:
        """Overwrite the file with zeros, then unlink it; forget the file key."""
        self._file_key = None
        with contextlib.suppress(OSError):
            _shred(self.path)


def _read_regular_file(path: Path) -> bytes:
    """The bytes of the regular file at `path`, at most `_MAX_FILE_BYTES`; OSError for a
    FIFO, a directory or a device put there (opened without waiting for a writer)."""
    descriptor, info = open_without_waiting(path)
    try:
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_FILE_BYTES:
            raise OSError("not a room state file")
        data = bytearray()
        while len(data) <= _MAX_FILE_BYTES:
            piece = os.read(descriptor, _MAX_FILE_BYTES + 1 - len(data))
            if not piece:
                break
            data += piece
    finally:
        os.close(descriptor)
    if len(data) > _MAX_FILE_BYTES:
        raise OSError("not a room state file")
    return bytes(data)
