"""The local device store (client/keystore.py) and Extra Lock records (crypto/lock.py)."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

import atopos.client.keystore as keystore_module
from atopos.client.keystore import (
    DeviceExists,
    DeviceStore,
    DeviceStoreDamaged,
    ExtraLockRequired,
    NoDevice,
    WrongExtraLockPassphrase,
    default_home,
    usable_keyring,
    write_private_file,
)
from atopos.crypto.device import DeviceKeys
from atopos.crypto.errors import DecryptionFailed, PassphraseRequired
from atopos.crypto.kdf import Argon2Params
from atopos.crypto.lock import (
    EXTRA_LOCK_ARGON2,
    MODE_KEY,
    MODE_PASSPHRASE,
    MODE_PLAIN,
    lock_mode,
    lock_plain,
    lock_with_key,
    lock_with_passphrase,
    unlock,
)

CHEAP = Argon2Params(memory_kib=8, iterations=1, lanes=1)
SEED = bytes(range(32))


class MemoryKeyring:
    """A keyring backend that keeps entries in a dict (the store needs only three calls)."""

    def __init__(self, *, refuses: bool = False) -> None:
        self.entries: dict[tuple[str, str], str] = {}
        self.refuses = refuses

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        if self.refuses:
            raise RuntimeError("locked")
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        del self.entries[(service, username)]


def store_at(home: Path, keyring: MemoryKeyring | None = None) -> DeviceStore:
    return DeviceStore(home, keyring=keyring, extra_lock_argon2=CHEAP)


def all_files(home: Path) -> Iterator[Path]:
    return (path for path in home.rglob("*") if path.is_file())


def forms(secret: bytes) -> list[bytes]:
    """The ways a secret could sit in a file: raw, hex, base64 and base64url."""
    return [
        secret,
        secret.hex().encode(),
        secret.hex().upper().encode(),
        base64.b64encode(secret).rstrip(b"="),
        base64.urlsafe_b64encode(secret).rstrip(b"="),
    ]


# -- lock records --------------------------------------------------------------------------


def test_lock_records_round_trip() -> None:
    secret = b"s" * 32
    assert unlock(lock_plain(secret), purpose="p") == secret
    assert lock_mode(lock_plain(secret)) == MODE_PLAIN
    locked = lock_with_passphrase(secret, "pw", purpose="p", random_bytes=os.urandom, params=CHEAP)
    assert lock_mode(locked) == MODE_PASSPHRASE
    assert unlock(locked, purpose="p", passphrase="pw") == secret
    key = os.urandom(32)
    keyed = lock_with_key(secret, key, purpose="p", random_bytes=os.urandom)
    assert lock_mode(keyed) == MODE_KEY
    assert unlock(keyed, purpose="p", key=key) == secret
    assert secret not in locked
    assert secret not in keyed


def test_lock_records_fail_closed() -> None:
    locked = lock_with_passphrase(
        b"x" * 32, "pw", purpose="p", random_bytes=os.urandom, params=CHEAP
    )
    with pytest.raises(PassphraseRequired):
        unlock(locked, purpose="p")
    with pytest.raises(DecryptionFailed):
        unlock(locked, purpose="p", passphrase="wrong")
    with pytest.raises(DecryptionFailed):
        unlock(locked, purpose="other purpose", passphrase="pw")
    for index in range(len(locked)):
        tampered = bytearray(locked)
        tampered[index] ^= 0x01
        with pytest.raises(DecryptionFailed):
            unlock(bytes(tampered), purpose="p", passphrase="pw")
    with pytest.raises(DecryptionFailed):
        unlock(locked[:-1], purpose="p", passphrase="pw")
    # A record whose cost field is absurd is refused before any Argon2 work.
    huge = bytearray(locked)
    huge[6:10] = (2**31).to_bytes(4, "big")
    with pytest.raises(DecryptionFailed):
        unlock(bytes(huge), purpose="p", passphrase="pw")
    keyed = lock_with_key(b"y", bytes(32), purpose="p", random_bytes=os.urandom)
    with pytest.raises(DecryptionFailed):
        unlock(keyed, purpose="p", key=bytes([1]) * 32)
    with pytest.raises(DecryptionFailed):
        unlock(b"XXXX\x01\x00", purpose="p")


def test_extra_lock_cost_is_the_documented_one() -> None:
    assert Argon2Params(memory_kib=262144, iterations=3, lanes=4) == EXTRA_LOCK_ARGON2
    docs = Path(__file__).resolve().parents[2] / "docs" / "protocol" / "device.md"
    assert "262144" in docs.read_text("utf-8")


# -- where the store lives -----------------------------------------------------------------


def test_default_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keystore_module.sys, "platform", "linux")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_home({"ATOPOS_HOME": "/x/y"}) == Path("/x/y")
    assert default_home({}) == tmp_path / ".local" / "share" / "atopos"
    assert default_home({"XDG_DATA_HOME": "/data"}) == Path("/data/atopos")
    # The XDG spec says relative values are to be ignored.
    assert default_home({"XDG_DATA_HOME": "rel"}) == tmp_path / ".local" / "share" / "atopos"


def test_keyring_off_and_fake_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring
    from keyring.backends import chainer, fail, null

    assert usable_keyring({"ATOPOS_KEYRING": "off"}) is None
    monkeypatch.setattr(keyring, "get_keyring", fail.Keyring)
    assert usable_keyring({}) is None
    monkeypatch.setattr(keyring, "get_keyring", null.Keyring)
    assert usable_keyring({}) is None
    monkeypatch.setattr(chainer.ChainerBackend, "backends", [])
    monkeypatch.setattr(keyring, "get_keyring", chainer.ChainerBackend)
    assert usable_keyring({}) is None

    class Real(keyring.backend.KeyringBackend):
        priority = 5  # type: ignore[assignment]

        def get_password(self, service: str, username: str) -> str | None:
            return None

        def set_password(self, service: str, username: str, password: str) -> None:
            pass

        def delete_password(self, service: str, username: str) -> None:
            pass

    real = Real()
    monkeypatch.setattr(keyring, "get_keyring", lambda: real)
    assert usable_keyring({}) is real
    assert usable_keyring({"ATOPOS_KEYRING": "OFF"}) is None

    def broken() -> object:
        raise RuntimeError("no D-Bus")

    monkeypatch.setattr(keyring, "get_keyring", broken)
    assert usable_keyring({}) is None


# -- files ---------------------------------------------------------------------------------


def test_private_files_are_never_wider_than_0600(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    real_replace = os.replace

    def checking_replace(source: str, target: Path) -> None:
        seen.append(stat.S_IMODE(os.stat(source).st_mode))
        real_replace(source, target)

    monkeypatch.setattr(keystore_module.os, "replace", checking_replace)
    old = os.umask(0)  # the most permissive umask must not matter
    try:
        write_private_file(tmp_path / "f", b"data")
    finally:
        os.umask(old)
    assert seen == [0o600]
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o600
    assert list(tmp_path.iterdir()) == [tmp_path / "f"]


def test_failed_write_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_replace(source: str, target: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keystore_module.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space"):
        write_private_file(tmp_path / "f", b"data")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_store_modes(tmp_path: Path, umask: int) -> None:
    home = tmp_path / "a" / "home"
    old = os.umask(umask)
    try:
        store_at(home).save(SEED)
        store_at(home).session(SEED).put("ticket", b"t")
    finally:
        os.umask(old)
    for path in [home, *home.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path


def test_existing_home_with_wide_mode_is_tightened(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    store_at(home).save(SEED)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


# -- the device ----------------------------------------------------------------------------


def test_save_and_load_without_extra_lock(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    assert not store.has_device()
    with pytest.raises(NoDevice):
        store.public()
    public = store.save(SEED)
    assert public == DeviceKeys.from_seed(SEED).public
    assert store.public() == public
    assert not store.is_extra_locked()
    assert store.load().public == public
    assert store.load_seed() == SEED
    assert sorted(path.name for path in tmp_path.iterdir()) == ["device-seed", "device.json"]
    # The public record holds the device code and nothing secret.
    record = (tmp_path / "device.json").read_bytes()
    assert public.code.encode() in record
    assert not any(form in record for form in forms(SEED))


def test_save_refuses_to_replace_without_being_told(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.save(SEED)
    with pytest.raises(DeviceExists):
        store.save(bytes(32))
    assert store.load_seed() == SEED
    store.save(bytes(32), replace=True)
    assert store.load_seed() == bytes(32)


def test_extra_lock_leaves_nothing_readable_on_disk(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.save(SEED, passphrase="correct horse")
    keys = DeviceKeys.from_seed(SEED)
    store.session(SEED).put("room", b"room key material 0123456789abcdef")
    secrets = [SEED, *keys.private_bytes()]
    files = list(all_files(tmp_path))
    assert len(files) == 3
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            for form in forms(secret):
                assert form not in data, (path, form)
        assert b"room key material" not in data
    assert store.is_extra_locked()
    with pytest.raises(ExtraLockRequired):
        store.load()
    with pytest.raises(WrongExtraLockPassphrase):
        store.load("wrong horse")
    assert store.load("correct horse").public == keys.public


def test_keyring_holds_the_seed_when_there_is_one(tmp_path: Path) -> None:
    keyring = MemoryKeyring()
    store = store_at(tmp_path, keyring)
    store.save(SEED)
    assert not (tmp_path / "device-seed").exists()
    assert len(keyring.entries) == 1
    assert store.load_seed() == SEED
    assert store.wipe()
    assert keyring.entries == {}
    assert list(all_files(tmp_path)) == []


def test_a_refusing_keyring_falls_back_to_the_file(tmp_path: Path) -> None:
    store = store_at(tmp_path, MemoryKeyring(refuses=True))
    store.save(SEED)
    assert (tmp_path / "device-seed").exists()
    assert store.load_seed() == SEED


def test_wipe_overwrites_before_unlinking(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.save(SEED)
    store.session(SEED).put("ticket", b"ticket in use")
    # A second name for the same inode survives the unlink and shows what was left in it.
    witness = tmp_path.parent / "witness"
    os.link(tmp_path / "device-seed", witness)
    size = witness.stat().st_size
    assert store.wipe()
    assert witness.read_bytes() == bytes(size)
    assert list(all_files(tmp_path)) == []
    assert not (tmp_path / "session").exists()
    assert not store.has_device()
    assert not store.wipe()  # nothing left


def test_session_state(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.save(SEED)
    session = store.session(SEED)
    session.put("ticket/abc", b"value")
    assert session.get("ticket/abc") == b"value"
    assert session.get("other") is None
    names = [path.name for path in (tmp_path / "session").iterdir()]
    assert len(names) == 1
    assert "ticket" not in names[0]
    assert b"value" not in (tmp_path / "session" / names[0]).read_bytes()
    # Another device's key reads nothing.
    assert store.session(bytes(32)).get("ticket/abc") is None
    session.delete("ticket/abc")
    assert session.get("ticket/abc") is None
    session.put("a", b"1")
    session.clear()
    assert list((tmp_path / "session").iterdir()) == []


def test_damaged_store_is_reported_in_one_sentence(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.save(SEED)
    (tmp_path / "device.json").write_text("{")
    with pytest.raises(DeviceStoreDamaged, match="recover"):
        store.public()
    store.wipe()
    store.save(SEED)
    (tmp_path / "device-seed").write_bytes(b"garbage")
    with pytest.raises(DeviceStoreDamaged):
        store.load()
    store.save(bytes(32), replace=True)
    write_private_file(tmp_path / "device-seed", lock_plain(SEED))  # another device's seed
    with pytest.raises(DeviceStoreDamaged):
        store.load()
