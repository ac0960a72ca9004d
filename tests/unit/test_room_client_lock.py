"""Extra Lock room state (client/rooms_lock.py): never plaintext on disk, a wrong passphrase
or a changed byte opens nothing, a loaded member goes on reading the room, wipe leaves
nothing behind."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import pytest
from tests.rooms_support import held_values, open_room

from atopos.client.rooms_lock import (
    STATE_PURPOSE,
    LockedRoomState,
    RoomState,
    RoomStateReplaced,
    WrongRoomPassphrase,
    load_member,
)
from atopos.crypto.base64url import b64url_encode
from atopos.crypto.errors import DecryptionFailed
from atopos.crypto.kdf import Argon2Params
from atopos.crypto.lock import lock_with_key
from atopos.randomness import system_random_bytes

FAST = Argon2Params(memory_kib=8192, iterations=1, lanes=1)
MESSAGES = ["meet at the north gate", "bring the blue folder"]


def _saved_room(tmp_path: Path) -> tuple[LockedRoomState, object, bytes]:
    room = open_room("ann", "bob")
    for text in MESSAGES:
        room.say("ann", text)
    bob = room.members["bob"].member
    store = LockedRoomState.create(tmp_path, "correct horse", system_random_bytes, params=FAST)
    store.save(RoomState(room.new.member_link.text(), "bob", bob))
    return store, room, store.path.read_bytes()


def test_the_state_on_disk_holds_no_name_message_room_id_or_key(tmp_path: Path) -> None:
    store, room, data = _saved_room(tmp_path)
    bob = room.members["bob"].member  # type: ignore[attr-defined]
    values, keys = held_values(bob)
    secrets = {v for v in values if len(v) >= 16}
    for pair in keys:
        secrets.update(pair.private_bytes())
    secrets.add(room.new.member_link.room_id)  # type: ignore[attr-defined]
    assert len(secrets) > 10  # the member really held keys, chains and the room secret
    words = [b"bob", b"ann", b"Plans", *(m.encode() for m in MESSAGES)]
    link_text = room.new.member_link.text().encode()  # type: ignore[attr-defined]
    for needle in [*secrets, *words, link_text]:
        assert needle not in data
    for secret in secrets:
        assert b64url_encode(secret).encode() not in data
        assert secret.hex().encode() not in data
    assert store.path.name.removesuffix(".lock") not in room.new.member_link.text()  # type: ignore[attr-defined]
    assert oct(store.path.stat().st_mode & 0o777) == "0o600"


def test_a_wrong_passphrase_or_a_changed_byte_opens_nothing(tmp_path: Path) -> None:
    store, _room, data = _saved_room(tmp_path)
    with pytest.raises(WrongRoomPassphrase):
        LockedRoomState(store.path, system_random_bytes).open("correct horsE")
    for position in (3, len(data) // 2, len(data) - 1):
        changed = bytearray(data)
        changed[position] ^= 1
        store.path.write_bytes(bytes(changed))
        with pytest.raises(WrongRoomPassphrase):
            LockedRoomState(store.path, system_random_bytes).open("correct horse")


def test_the_loaded_member_reads_what_comes_next(tmp_path: Path) -> None:
    store, room, _data = _saved_room(tmp_path)
    state = LockedRoomState(store.path, system_random_bytes).open("correct horse")
    assert state.display_name == "bob"
    assert state.member is not None
    room.members["bob"].member = state.member  # type: ignore[attr-defined]
    room.say("ann", "after the restart")  # type: ignore[attr-defined]
    assert room.texts("bob")[-1] == (0, "after the restart")  # type: ignore[attr-defined]


def test_an_older_copy_put_back_while_locked_is_refused(tmp_path: Path) -> None:
    """Put back, the copy saved before bob's last message would rewind his sending chain:
    his next message would reuse that message's key and nonce under AES-GCM."""
    store, room, older = _saved_room(tmp_path)
    bob = room.members["bob"].member  # type: ignore[attr-defined]
    room.say("bob", "the plan is set")  # type: ignore[attr-defined]
    store.save(RoomState(room.new.member_link.text(), "bob", bob))  # type: ignore[attr-defined]
    store.lock()
    newer = store.path.read_bytes()
    store.path.write_bytes(older)
    with pytest.raises(RoomStateReplaced):
        store.open("correct horse")
    assert not store.is_unlocked
    # The state this process wrote last still opens, and a reopened state saves on.
    store.path.write_bytes(newer)
    state = store.open("correct horse")
    assert state.member is not None
    store.save(RoomState(room.new.member_link.text(), "bob", state.member))  # type: ignore[attr-defined]
    store.lock()
    assert store.open("correct horse").member is not None


CALLS: list[str] = []


def _called() -> None:
    CALLS.append("ran")


class _CallsOs:
    """Unpickling this would call `_called`: code named by the file, run at load."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_called, ())


def test_only_room_protocol_classes_are_built_from_an_opened_state(tmp_path: Path) -> None:
    # Even a record that opens under the file key may not name other code to run.
    hostile = pickle.dumps(("x", "y", _CallsOs()))
    with pytest.raises(DecryptionFailed):
        load_member(hostile, system_random_bytes)
    assert CALLS == []
    store = LockedRoomState.create(tmp_path, "pw", system_random_bytes, params=FAST)
    store.save(RoomState("link", "name", None))
    raw = store.path.read_bytes()
    (size,) = struct.unpack_from(">I", raw)
    key_record = raw[4 : 4 + size]
    assert store._file_key is not None
    evil = pickle.dumps(("link", "name", _CallsOs()))
    sealed = lock_with_key(
        evil, store._file_key, purpose=STATE_PURPOSE, random_bytes=system_random_bytes
    )
    store.path.write_bytes(raw[:4] + key_record + sealed)
    with pytest.raises(WrongRoomPassphrase):
        LockedRoomState(store.path, system_random_bytes).open("pw")
    assert CALLS == []


def test_wipe_overwrites_then_unlinks(tmp_path: Path) -> None:
    store, _room, data = _saved_room(tmp_path)
    witness = tmp_path / "witness"
    os.link(store.path, witness)  # a second name for the same inode sees the overwrite
    store.wipe()
    assert not store.path.exists()
    assert LockedRoomState.files(tmp_path) == []
    assert witness.read_bytes() == bytes(len(data))
    assert not store.is_unlocked


def test_a_fifo_or_a_directory_in_place_of_a_state_file_opens_nothing(tmp_path: Path) -> None:
    rooms = tmp_path / "rooms"
    rooms.mkdir()
    os.mkfifo(rooms / "a.lock")  # would block a plain open() forever
    (rooms / "b.lock").mkdir()
    for path in LockedRoomState.files(tmp_path):
        with pytest.raises(WrongRoomPassphrase):
            LockedRoomState(path, system_random_bytes).open("anything")
