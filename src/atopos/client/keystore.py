"""The local store of this device: its identity, its seed, its session state.

Everything lives under `ATOPOS_HOME` (default: the platform's per-user data directory, e.g.
`~/.local/share/atopos`), created with mode 0700:

    device.json     the public record: device code, where the seed is, whether Extra Lock is on
    device-seed     the seed's lock record (docs/protocol/device.md), mode 0600 -- only when
                    no OS keyring is usable; otherwise the record is a keyring entry
    session/        session state (tickets in use, later room keys), each entry encrypted
                    under a key derived from the seed, file names keyed likewise

With Extra Lock the seed's record is AES-256-GCM under Argon2id(passphrase), so nothing on
disk or in the keyring reveals the seed, the private keys or the session state without the
passphrase. Files are written to a fresh 0600 temporary file, fsynced and renamed into
place, so there is never a moment with wider permissions or a half-written file.
`ATOPOS_KEYRING=off` forces the file (tests, headless machines with a broken keyring).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.crypto.device import (
    DEVICE_SEED_BYTES,
    DeviceKeys,
    DevicePublic,
    InvalidDeviceCode,
    derive_session_key,
    parse_device_code,
)
from atopos.crypto.errors import DecryptionFailed, PassphraseRequired
from atopos.crypto.kdf import Argon2Params
from atopos.crypto.lock import (
    EXTRA_LOCK_ARGON2,
    MODE_PASSPHRASE,
    lock_mode,
    lock_plain,
    lock_with_key,
    lock_with_passphrase,
    unlock,
)
from atopos.errors import AtoposError, InvalidInput, Refused

__all__ = [
    "ENV_HOME",
    "ENV_KEYRING",
    "DeviceExists",
    "DeviceStore",
    "DeviceStoreDamaged",
    "ExtraLockRequired",
    "KeyringBackend",
    "NoDevice",
    "SessionState",
    "WrongExtraLockPassphrase",
    "default_home",
    "usable_keyring",
    "write_private_file",
]

ENV_HOME = "ATOPOS_HOME"
ENV_KEYRING = "ATOPOS_KEYRING"
_KEYRING_SERVICE = "atopos"
_DEVICE_FILE = "device.json"
_SEED_FILE = "device-seed"
_SESSION_DIR = "session"
_TEMP_PREFIX = ".atopos-tmp-"
_SEED_PURPOSE = "atopos/device-seed"
_SESSION_PURPOSE = "atopos/session/"
_FORMAT = 1
_MAX_RECORD_BYTES = 64 * 1024


class NoDevice(InvalidInput):
    def __init__(self) -> None:
        super().__init__("This machine has no device yet; run `atopos device init`.")


class DeviceExists(InvalidInput):
    def __init__(self) -> None:
        super().__init__(
            "A device already exists here; pass --force to replace it "
            "(secrets bound to it will no longer open)."
        )


class ExtraLockRequired(Refused):
    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "The device is protected by Extra Lock; give its passphrase with "
            "--passphrase-file or on a terminal."
        )


class WrongExtraLockPassphrase(Refused):
    def __init__(self) -> None:
        super().__init__("The Extra Lock passphrase is wrong.")


class DeviceStoreDamaged(AtoposError):
    def __init__(self, home: Path) -> None:
        super().__init__(
            f"The device store in {home} is damaged; restore it with `atopos device recover`."
        )


# -- where things live ---------------------------------------------------------------------


def default_home(environ: Mapping[str, str] = os.environ) -> Path:
    """`ATOPOS_HOME`, else the platform's per-user data directory for atopos."""
    if home := environ.get(ENV_HOME):
        return Path(home).expanduser()
    if sys.platform == "win32":
        base = environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "atopos"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "atopos"
    base = environ.get("XDG_DATA_HOME") or ""
    # XDG: a relative value is invalid and must be ignored.
    root = Path(base) if os.path.isabs(base) else Path.home() / ".local" / "share"
    return root / "atopos"


def _private_directory(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    # mkdir's mode is cut by the umask and ignored for an existing directory: make sure.
    is_ours = not hasattr(os, "getuid") or info.st_uid == os.getuid()
    if stat.S_IMODE(info.st_mode) & 0o077 and is_ours:
        path.chmod(0o700)
    return path


def _fsync_directory(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def write_private_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` with mode 0600, atomically and durably.

    mkstemp creates the temporary file with O_EXCL and mode 0600 from the start, so the
    content is never readable by others, not even for a moment; the rename replaces the
    old file in one step.
    """
    descriptor, temporary = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            if hasattr(os, "fchmod"):  # POSIX: exactly 0600 (mkstemp made it so already)
                os.fchmod(file.fileno(), 0o600)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_directory(path.parent)


def _shred(path: Path) -> None:
    """Overwrite a file with zeros, fsync, unlink. (On SSDs and copy-on-write file systems
    the old blocks may survive; Extra Lock is the real protection.)"""
    try:
        size = path.lstat().st_size
        if path.is_file() and not path.is_symlink():
            with path.open("r+b") as file:
                file.write(bytes(size))
                file.flush()
                os.fsync(file.fileno())
        path.unlink()
    except FileNotFoundError:
        return


# -- the keyring ---------------------------------------------------------------------------


class KeyringBackend(Protocol):
    """The part of a `keyring` backend the store uses."""

    def get_password(self, service: str, username: str) -> str | None: ...

    def set_password(self, service: str, username: str, password: str) -> None: ...

    def delete_password(self, service: str, username: str) -> None: ...


def _is_real_keyring(backend: Any) -> bool:
    from keyring.backends import chainer, fail, null

    if isinstance(backend, fail.Keyring | null.Keyring):
        return False
    if isinstance(backend, chainer.ChainerBackend):
        return any(_is_real_keyring(inner) for inner in backend.backends)
    # keyrings.alt's plaintext file is no better than our own 0600 file.
    if type(backend).__module__.startswith("keyrings.alt"):
        return False
    return bool(getattr(backend, "priority", 0) > 0)


def usable_keyring(environ: Mapping[str, str] = os.environ) -> KeyringBackend | None:
    """The OS keyring when a real one is there and `ATOPOS_KEYRING` is not `off`."""
    if environ.get(ENV_KEYRING, "").strip().lower() in ("off", "0", "no", "false"):
        return None
    try:
        import keyring

        backend = keyring.get_keyring()
        return backend if _is_real_keyring(backend) else None
    except Exception:  # a broken backend (D-Bus down, ...) is no keyring at all
        return None


# -- the record in device.json -------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _DeviceRecord:
    device_code: str
    seed_storage: Literal["keyring", "file"]
    keyring_entry: str | None
    is_extra_locked: bool

    def to_json(self) -> bytes:
        record = {"format": _FORMAT, **dataclasses.asdict(self)}
        return (json.dumps(record, indent=2) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> _DeviceRecord:
        record = json.loads(data.decode("utf-8"))
        if not isinstance(record, dict) or record.get("format") != _FORMAT:
            raise ValueError("not a device record")
        storage = record["seed_storage"]
        entry = record["keyring_entry"]
        if storage not in ("keyring", "file") or not isinstance(record["device_code"], str):
            raise ValueError("not a device record")
        if storage == "keyring" and not isinstance(entry, str):
            raise ValueError("not a device record")
        return cls(
            device_code=record["device_code"],
            seed_storage=storage,
            keyring_entry=entry if storage == "keyring" else None,
            is_extra_locked=record["is_extra_locked"] is True,
        )


# -- the store -----------------------------------------------------------------------------


class DeviceStore:
    """This device's identity and secrets under one home directory (and maybe the keyring)."""

    def __init__(
        self,
        home: Path,
        *,
        keyring: KeyringBackend | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
        extra_lock_argon2: Argon2Params = EXTRA_LOCK_ARGON2,
    ) -> None:
        self.home = home
        self._keyring = keyring
        self._random_bytes = random_bytes
        self._argon2 = extra_lock_argon2

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> DeviceStore:
        return cls(default_home(environ), keyring=usable_keyring(environ))

    @property
    def _device_path(self) -> Path:
        return self.home / _DEVICE_FILE

    @property
    def _seed_path(self) -> Path:
        return self.home / _SEED_FILE

    # -- reading --------------------------------------------------------------------------

    def has_device(self) -> bool:
        return self._device_path.exists()

    def _record(self) -> _DeviceRecord:
        try:
            data = self._device_path.read_bytes()
        except FileNotFoundError:
            raise NoDevice from None
        try:
            return _DeviceRecord.from_json(data)
        except (ValueError, KeyError, TypeError):
            raise DeviceStoreDamaged(self.home) from None

    def public(self) -> DevicePublic:
        """This device's public keys (no passphrase needed); NoDevice when there is none."""
        try:
            return parse_device_code(self._record().device_code)
        except InvalidDeviceCode:
            raise DeviceStoreDamaged(self.home) from None

    def is_extra_locked(self) -> bool:
        return self._record().is_extra_locked

    def _read_seed_record(self, record: _DeviceRecord) -> bytes:
        if record.seed_storage == "file":
            try:
                data = self._seed_path.read_bytes()
            except FileNotFoundError:
                raise DeviceStoreDamaged(self.home) from None
            return data
        if self._keyring is None or record.keyring_entry is None:
            raise AtoposError("The device's seed is in the OS keyring, which is not available now.")
        text = self._keyring.get_password(_KEYRING_SERVICE, record.keyring_entry)
        try:
            return b64url_decode(text or "")
        except ValueError:
            raise DeviceStoreDamaged(self.home) from None

    def load_seed(self, passphrase: str | None = None) -> bytes:
        """The seed. ExtraLockRequired without the passphrase of an Extra Lock device,
        WrongExtraLockPassphrase with a wrong one, NoDevice when there is no device."""
        record = self._record()
        sealed = self._read_seed_record(record)
        try:
            mode = lock_mode(sealed)
        except DecryptionFailed:
            raise DeviceStoreDamaged(self.home) from None
        if (mode == MODE_PASSPHRASE) != record.is_extra_locked:
            raise DeviceStoreDamaged(self.home)
        try:
            seed = unlock(
                sealed,
                purpose=_SEED_PURPOSE,
                passphrase=passphrase if record.is_extra_locked else None,
            )
        except PassphraseRequired:
            raise ExtraLockRequired from None
        except DecryptionFailed:
            if mode == MODE_PASSPHRASE:
                raise WrongExtraLockPassphrase from None
            raise DeviceStoreDamaged(self.home) from None
        if len(seed) != DEVICE_SEED_BYTES:
            raise DeviceStoreDamaged(self.home)
        return seed

    def load(self, passphrase: str | None = None) -> DeviceKeys:
        """The device's private keys, checked against its public record."""
        keys = DeviceKeys.from_seed(self.load_seed(passphrase))
        if keys.public != self.public():
            raise DeviceStoreDamaged(self.home)
        return keys

    def session(self, seed: bytes) -> SessionState:
        """The session state of this device (needs the seed: it is encrypted under it)."""
        directory = _private_directory(_private_directory(self.home) / _SESSION_DIR)
        return SessionState(directory, derive_session_key(seed), self._random_bytes)

    # -- writing --------------------------------------------------------------------------

    def save(
        self, seed: bytes, *, passphrase: str | None = None, replace: bool = False
    ) -> DevicePublic:
        """Store `seed` as this device (Extra Lock when `passphrase` is given).

        DeviceExists unless `replace`; replacing wipes the old device first.
        """
        if len(seed) != DEVICE_SEED_BYTES:
            raise ValueError(f"a device seed is {DEVICE_SEED_BYTES} bytes")
        if self.has_device():
            if not replace:
                raise DeviceExists
            self.wipe()
        public = DeviceKeys.from_seed(seed).public
        if passphrase is not None:
            sealed = lock_with_passphrase(
                seed,
                passphrase,
                purpose=_SEED_PURPOSE,
                random_bytes=self._random_bytes,
                params=self._argon2,
            )
        else:
            sealed = lock_plain(seed)
        _private_directory(self.home)
        storage: Literal["keyring", "file"] = "file"
        entry = None
        if self._keyring is not None:
            entry = f"device-seed/{b64url_encode(self._random_bytes(16))}"
            try:
                self._keyring.set_password(_KEYRING_SERVICE, entry, b64url_encode(sealed))
                storage = "keyring"
            except Exception:  # a keyring that refuses (locked, no agent): use the file
                entry = None
        if storage == "file":
            write_private_file(self._seed_path, sealed)
        # The public record goes last: a device exists only once its seed is stored.
        record = _DeviceRecord(public.code, storage, entry, passphrase is not None)
        write_private_file(self._device_path, record.to_json())
        return public

    def wipe(self) -> bool:
        """Delete this device and its session state: keyring entry, seed, record, session
        files (each overwritten with zeros, fsynced, unlinked). True if anything was there."""
        found = False
        with contextlib.suppress(NoDevice, DeviceStoreDamaged):
            record = self._record()
            if record.keyring_entry is not None and self._keyring is not None:
                with contextlib.suppress(Exception):
                    self._keyring.delete_password(_KEYRING_SERVICE, record.keyring_entry)
                    found = True
        session = self.home / _SESSION_DIR
        paths = [self._seed_path, self._device_path]
        if session.is_dir():
            paths += [path for path in session.iterdir() if path.is_file()]
        if self.home.is_dir():
            paths += [path for path in self.home.glob(f"{_TEMP_PREFIX}*") if path.is_file()]
            if session.is_dir():
                paths += [path for path in session.glob(f"{_TEMP_PREFIX}*") if path.is_file()]
        for path in paths:
            if path.exists():
                found = True
                _shred(path)
        if session.is_dir():
            with contextlib.suppress(OSError):
                session.rmdir()
        if self.home.is_dir():
            _fsync_directory(self.home)
        return found


class SessionState:
    """Small named records (tickets in use, room keys) kept between commands.

    Each entry is a lock record (mode 2) under a key derived from the device seed, in a file
    whose name is an HMAC of the entry's name under that key: the disk shows neither the
    contents nor what they are about.
    """

    def __init__(
        self, directory: Path, key: bytes, random_bytes: Callable[[int], bytes] = os.urandom
    ) -> None:
        self._directory = directory
        self._key = key
        self._random_bytes = random_bytes

    def _path(self, name: str) -> Path:
        tag = hmac.new(self._key, name.encode("utf-8"), hashlib.sha256).hexdigest()[:32]
        return self._directory / tag

    def put(self, name: str, data: bytes) -> None:
        if len(data) > _MAX_RECORD_BYTES:
            raise ValueError("session records are small")
        sealed = lock_with_key(
            data, self._key, purpose=_SESSION_PURPOSE + name, random_bytes=self._random_bytes
        )
        write_private_file(self._path(name), sealed)

    def get(self, name: str) -> bytes | None:
        try:
            sealed = self._path(name).read_bytes()
        except FileNotFoundError:
            return None
        try:
            return unlock(sealed, purpose=_SESSION_PURPOSE + name, key=self._key)
        except DecryptionFailed:
            return None

    def delete(self, name: str) -> None:
        _shred(self._path(name))

    def clear(self) -> None:
        for path in list(self._entries()):
            _shred(path)

    def _entries(self) -> Iterator[Path]:
        return (
            path
            for path in self._directory.iterdir()
            if path.is_file() and not path.name.startswith(_TEMP_PREFIX)
        )
