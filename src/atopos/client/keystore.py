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

Reading is defensive: whatever sits at these paths (a truncated or hand-edited file, binary
garbage, JSON nested deep enough to exhaust the parser, a directory, a FIFO, a link to
/dev/zero, a file we may not read) becomes `DeviceStoreDamaged` or `DeviceStoreUnreadable`,
one sentence each, and nothing is read past a small size limit. A command that fails that way
never writes to or removes the store, so its owner can still repair or recover it.
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
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

from atopos.client.local_files import open_without_waiting
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
from atopos.randomness import RandomBytes, system_random_bytes

__all__ = [
    "ENV_HOME",
    "ENV_KEYRING",
    "DeviceExists",
    "DeviceStore",
    "DeviceStoreDamaged",
    "DeviceStoreUnreadable",
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
# device.json is about 200 bytes and a seed's lock record under 100: anything much larger is
# not ours, and is refused before it is read into memory or parsed.
_MAX_DEVICE_FILE_BYTES = 16 * 1024
_MAX_SEED_RECORD_BYTES = 4 * 1024
# A session entry is a lock record of at most _MAX_RECORD_BYTES plus its header and tag.
_MAX_SESSION_FILE_BYTES = _MAX_RECORD_BYTES + 1024


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
    """The store is there but is not what Atopos wrote (exit 1: a local problem).

    `detail` is a fixed phrase of ours naming the file and what is wrong with it; nothing
    read from the file is ever part of the sentence.
    """

    def __init__(self, home: Path, detail: str | None = None) -> None:
        what = f" ({detail})" if detail else ""
        super().__init__(
            f"The device store in {home} is damaged{what} and was left untouched; "
            "restore it with `atopos device recover --force` and the recovery phrase."
        )


class DeviceStoreUnreadable(AtoposError):
    """A file of the store exists but cannot be read (permissions, I/O error): exit 1."""

    def __init__(self, path: Path, error: OSError) -> None:
        reason = (error.strerror or "input/output error").rstrip(".").lower()
        super().__init__(f"Could not read {path}: {reason}.")


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


def _read_small_file(path: Path, limit: int, home: Path) -> bytes:
    """The content of the regular file `path`, at most `limit` bytes.

    FileNotFoundError when there is nothing at `path`; DeviceStoreDamaged when it is not a
    regular file or is larger than `limit` (nothing more than `limit` + 1 bytes is read);
    DeviceStoreUnreadable for any other failure to open or read it. A FIFO put in the
    file's place does not block (open_without_waiting).
    """
    try:
        descriptor, info = open_without_waiting(path)
    except FileNotFoundError:
        raise
    except IsADirectoryError:  # Windows refuses to open a directory at all
        raise DeviceStoreDamaged(home, f"{path.name} is a directory") from None
    except OSError as error:
        raise DeviceStoreUnreadable(path, error) from None
    try:
        if stat.S_ISDIR(info.st_mode):
            raise DeviceStoreDamaged(home, f"{path.name} is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise DeviceStoreDamaged(home, f"{path.name} is not a regular file")
        if info.st_size > limit:
            raise DeviceStoreDamaged(home, f"{path.name} is far too large")
        data = bytearray()
        while len(data) <= limit:
            piece = os.read(descriptor, limit + 1 - len(data))
            if not piece:
                break
            data += piece
    except OSError as error:
        raise DeviceStoreUnreadable(path, error) from None
    finally:
        os.close(descriptor)
    if len(data) > limit:  # it grew after fstat
        raise DeviceStoreDamaged(home, f"{path.name} is far too large")
    return bytes(data)


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
        """The record in `data`; ValueError for anything but a record this code wrote.

        The caller bounds `data`; the parser may still raise RecursionError (JSON nested
        past the interpreter's limit fits in a few kilobytes), which is turned into
        ValueError here with the rest.
        """
        try:
            record = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError, MemoryError):
            raise ValueError("not JSON") from None
        if not isinstance(record, dict) or type(record.get("format")) is not int:
            raise ValueError("not a device record")
        if record["format"] != _FORMAT:
            raise ValueError("not a device record of this version")
        storage = record.get("seed_storage")
        entry = record.get("keyring_entry")
        code = record.get("device_code")
        is_extra_locked = record.get("is_extra_locked")
        if (
            storage not in ("keyring", "file")
            or not isinstance(code, str)
            or not isinstance(is_extra_locked, bool)
            or (storage == "keyring" and not isinstance(entry, str))
        ):
            raise ValueError("not a device record")
        return cls(
            device_code=code,
            seed_storage=storage,
            keyring_entry=entry if storage == "keyring" else None,
            is_extra_locked=is_extra_locked,
        )


# -- the store -----------------------------------------------------------------------------


class DeviceStore:
    """This device's identity and secrets under one home directory (and maybe the keyring)."""

    def __init__(
        self,
        home: Path,
        *,
        keyring: KeyringBackend | None = None,
        random_bytes: RandomBytes = system_random_bytes,
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
        """True when anything of a device is here, damaged or not: its record, or a seed
        file without one (a record deleted by hand). `init` and `recover` then refuse to
        proceed without --force, so a stray command never overwrites a seed that might
        still be rescued."""
        return self._is_there(self._device_path) or self._is_there(self._seed_path)

    def _is_there(self, path: Path) -> bool:
        try:
            path.lstat()  # lstat: a dangling link is something too
        except FileNotFoundError:
            return False
        except OSError as error:  # ATOPOS_HOME is a file, or may not be searched: say so
            raise DeviceStoreUnreadable(path, error) from None
        return True

    def _record(self) -> _DeviceRecord:
        path = self._device_path
        try:
            data = _read_small_file(path, _MAX_DEVICE_FILE_BYTES, self.home)
        except FileNotFoundError:
            if path.is_symlink():
                raise DeviceStoreDamaged(self.home, f"{path.name} is a broken link") from None
            if self._is_there(self._seed_path):
                raise DeviceStoreDamaged(
                    self.home, f"{path.name} is missing beside {_SEED_FILE}"
                ) from None
            raise NoDevice from None
        try:
            return _DeviceRecord.from_json(data)
        except ValueError:
            raise DeviceStoreDamaged(self.home, f"{path.name} is not a device record") from None

    def public(self) -> DevicePublic:
        """This device's public keys (no passphrase needed); NoDevice when there is none."""
        return self._public(self._record())

    def _public(self, record: _DeviceRecord) -> DevicePublic:
        try:
            return parse_device_code(record.device_code)
        except InvalidDeviceCode:
            raise DeviceStoreDamaged(
                self.home, f"the device code in {_DEVICE_FILE} is not valid"
            ) from None

    def is_extra_locked(self) -> bool:
        return self._record().is_extra_locked

    def _read_seed_record(self, record: _DeviceRecord) -> bytes:
        if record.seed_storage == "file":
            try:
                return _read_small_file(self._seed_path, _MAX_SEED_RECORD_BYTES, self.home)
            except FileNotFoundError:
                raise DeviceStoreDamaged(self.home, f"{_SEED_FILE} is missing") from None
        if self._keyring is None or record.keyring_entry is None:
            raise AtoposError("The device's seed is in the OS keyring, which is not available now.")
        try:
            text = self._keyring.get_password(_KEYRING_SERVICE, record.keyring_entry)
        except Exception:  # any backend failure (locked, D-Bus gone); its text is not shown
            raise AtoposError(
                "The OS keyring could not be read; unlock it and try again."
            ) from None
        if text is None:
            raise DeviceStoreDamaged(self.home, "the seed's keyring entry is missing")
        if not isinstance(text, str) or len(text) > 2 * _MAX_SEED_RECORD_BYTES:
            raise DeviceStoreDamaged(self.home, "the seed's keyring entry is not one of ours")
        try:
            return b64url_decode(text)
        except ValueError:
            raise DeviceStoreDamaged(
                self.home, "the seed's keyring entry is not one of ours"
            ) from None

    def load_seed(self, passphrase: str | None = None) -> bytes:
        """The seed. ExtraLockRequired without the passphrase of an Extra Lock device,
        WrongExtraLockPassphrase with a wrong one, NoDevice when there is no device."""
        return self._load_seed(self._record(), passphrase)

    def _load_seed(self, record: _DeviceRecord, passphrase: str | None) -> bytes:
        sealed = self._read_seed_record(record)
        try:
            mode = lock_mode(sealed)
        except DecryptionFailed:
            raise DeviceStoreDamaged(self.home, "the seed's record is not one of ours") from None
        if (mode == MODE_PASSPHRASE) != record.is_extra_locked:
            raise DeviceStoreDamaged(self.home, f"the seed's record disagrees with {_DEVICE_FILE}")
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
            raise DeviceStoreDamaged(self.home, "the seed's record does not open") from None
        if len(seed) != DEVICE_SEED_BYTES:
            raise DeviceStoreDamaged(self.home, "the seed has the wrong length")
        return seed

    def load(self, passphrase: str | None = None) -> DeviceKeys:
        """The device's private keys, checked against its public record."""
        record = self._record()
        keys = DeviceKeys.from_seed(self._load_seed(record, passphrase))
        if keys.public != self._public(record):
            raise DeviceStoreDamaged(self.home, f"the seed does not match {_DEVICE_FILE}")
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
        with contextlib.suppress(NoDevice, DeviceStoreDamaged, DeviceStoreUnreadable):
            record = self._record()
            if record.keyring_entry is not None and self._keyring is not None:
                with contextlib.suppress(Exception):
                    self._keyring.delete_password(_KEYRING_SERVICE, record.keyring_entry)
                    found = True
        session = self.home / _SESSION_DIR
        has_session = session.is_dir()
        paths = [self._seed_path, self._device_path]
        if has_session:  # every file there, half-written temporary ones included
            paths += [path for path in session.iterdir() if path.is_file()]
        if self.home.is_dir():
            paths += [path for path in self.home.glob(f"{_TEMP_PREFIX}*") if path.is_file()]
        for path in paths:
            if path.exists():
                found = True
                _shred(path)
        if has_session:
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
        self, directory: Path, key: bytes, random_bytes: RandomBytes = system_random_bytes
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
        """The entry, or None when it is missing or is not a record this key sealed."""
        try:
            sealed = _read_small_file(
                self._path(name), _MAX_SESSION_FILE_BYTES, self._directory.parent
            )
        except (FileNotFoundError, DeviceStoreDamaged):
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
