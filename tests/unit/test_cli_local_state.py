"""Damaged local state never makes the CLI print a traceback or touch the store.

Each case below damages a healthy device store the way disks, editors and people do (JSON
nested past the parser's limit, wrong types, missing fields, bad base64, a truncated file,
binary garbage, a directory, a FIFO or /dev/zero where the file should be, a file we may not
read) and runs the real CLI entry point on it: the command must fail with exit 1 (a local
problem, `cli/exits.py`) and one line on stderr, and the store must be left exactly as it
was, so its owner can still repair it or export the phrase from what survives.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

import atopos.client.api as api_module
from atopos.cli.exits import ExitCode
from atopos.cli.main import run
from atopos.client.keystore import DeviceStore
from atopos.client.recovery import seed_to_phrase
from atopos.crypto.base64url import b64url_encode
from atopos.crypto.device import DeviceKeys
from atopos.crypto.lock import lock_plain

SEED = bytes(range(32))
OTHER_SEED = bytes(range(1, 33))
SECRET_ID = b64url_encode(bytes(range(16)))
LINK = f"http://fake.test/s/{SECRET_ID}#{b64url_encode(bytes(32))}"
ATOPOS = str(Path(sys.executable).with_name("atopos"))
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# -- running the CLI -------------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


def atopos(home: Path, *args: str, stdin: bytes = b"") -> Outcome:
    env = {"ATOPOS_HOME": str(home), "ATOPOS_KEYRING": "off", "ATOPOS_DEBUG": None}
    with CliRunner().isolation(input=stdin, env=env) as (out, err, _):
        code = run(list(args))
        sys.stdout.flush()
        sys.stderr.flush()
        return Outcome(code, out.getvalue().decode(), err.getvalue().decode())


def assert_one_line_error(outcome: Outcome, code: int = ExitCode.FAILURE) -> None:
    assert outcome.code == code, outcome.stderr
    assert outcome.stdout == ""
    assert "Traceback" not in outcome.stderr
    assert outcome.stderr.startswith("Error: ")
    assert outcome.stderr.endswith("\n")
    assert outcome.stderr.count("\n") == 1, outcome.stderr
    for form in (SEED.hex(), b64url_encode(SEED), seed_to_phrase(SEED).split()[0] + " "):
        assert form not in outcome.stderr


class BoundSecretServer:
    """Answers a challenge for a device-bound secret and records anything asked after it:
    with a damaged store nothing past the challenge may be requested (no view is spent)."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if request.url.path.endswith("/challenge"):
            body = {"challenge": "c", "bits": 0, "expires_at": 1_900_000_000, "is_bound": True}
            return httpx.Response(200, json=body)
        return httpx.Response(500, json={"error": "unexpected", "message": "Not here."})


@pytest.fixture
def bound_server(monkeypatch: pytest.MonkeyPatch) -> BoundSecretServer:
    server = BoundSecretServer()
    real = api_module.build_http_client

    def build(url: str, **options: Any) -> httpx.Client:
        return real(url, **{**options, "transport": httpx.MockTransport(server.handle)})

    monkeypatch.setattr(api_module, "build_http_client", build)
    return server


# -- the store and its snapshot --------------------------------------------------------------


def healthy_store(home: Path) -> None:
    DeviceStore(home, keyring=None).save(SEED)


def snapshot(home: Path) -> dict[str, tuple[object, ...]]:
    """Everything at and under `home` that a write, a rename or an unlink would change."""
    found: dict[str, tuple[object, ...]] = {}

    def visit(path: Path) -> None:
        info = path.lstat()
        key = str(path.relative_to(home.parent))
        if stat.S_ISLNK(info.st_mode):
            found[key] = ("link", os.readlink(path))
        elif stat.S_ISREG(info.st_mode):
            content = path.read_bytes() if os.access(path, os.R_OK) else None
            found[key] = ("file", info.st_mode, info.st_ino, info.st_mtime_ns, content)
        elif stat.S_ISDIR(info.st_mode):
            found[key] = ("dir", info.st_mode)
            for child in path.iterdir():
                visit(child)
        else:
            found[key] = ("other", info.st_mode, info.st_ino)

    visit(home)
    return found


def edit_record(**changes: object) -> Callable[[Path], None]:
    def apply(home: Path) -> None:
        path = home / "device.json"
        record = json.loads(path.read_text())
        for name, value in changes.items():
            if value is _REMOVE:
                del record[name]
            else:
                record[name] = value
        path.write_text(json.dumps(record))

    return apply


_REMOVE = object()


def write_device_file(content: bytes) -> Callable[[Path], None]:
    def apply(home: Path) -> None:
        (home / "device.json").write_bytes(content)

    return apply


def truncate(name: str, keep: float) -> Callable[[Path], None]:
    def apply(home: Path) -> None:
        data = (home / name).read_bytes()
        (home / name).write_bytes(data[: int(len(data) * keep)])

    return apply


def replace_with_directory(name: str) -> Callable[[Path], None]:
    def apply(home: Path) -> None:
        (home / name).unlink()
        (home / name).mkdir()
        (home / name / "x").write_text("x")

    return apply


def replace_with_fifo(home: Path) -> None:
    (home / "device.json").unlink()
    os.mkfifo(home / "device.json")


def link_to(target: str) -> Callable[[Path], None]:
    def apply(home: Path) -> None:
        (home / "device.json").unlink()
        (home / "device.json").symlink_to(target)

    return apply


def remove(name: str) -> Callable[[Path], None]:
    def apply(home: Path) -> None:
        (home / name).unlink()

    return apply


def home_is_a_file(home: Path) -> None:
    for path in home.iterdir():
        path.unlink()
    home.rmdir()
    home.write_text("not a directory")


def another_devices_seed(home: Path) -> None:
    (home / "device-seed").write_bytes(lock_plain(OTHER_SEED))


def unreadable(name: str) -> Callable[[Path], None]:
    def apply(home: Path) -> None:
        (home / name).chmod(0)

    return apply


SHOW = ("device", "show", "--no-qr")
EXPORT = ("device", "export-phrase")
# The challenge walk (no stamp), whose requests the bound server records.
REVEAL = ("secret", "reveal", "--no-stamp", LINK)
EVERY_COMMAND = frozenset({SHOW, EXPORT, REVEAL})
NEEDS_THE_SEED = frozenset({EXPORT, REVEAL})
NEEDS_THE_RECORD = frozenset({SHOW, REVEAL})  # export-phrase reads the seed it names


@dataclasses.dataclass(frozen=True)
class Damage:
    name: str
    apply: Callable[[Path], None]
    breaks: frozenset[tuple[str, ...]] = EVERY_COMMAND
    needs: Callable[[], bool] = lambda: True


def nested(depth: int, opening: str = "[", closing: str = "]") -> bytes:
    return (opening * depth + closing * depth).encode()


DAMAGES = [
    # Past the size limit: refused before parsing.
    Damage("nested-100000-deep", write_device_file(nested(100_000))),
    # Within the size limit, and still past the parser's recursion limit.
    Damage("nested-5000-deep", write_device_file(nested(5000))),
    Damage("objects-5000-deep", write_device_file(b'{"a":' * 5000 + b"1" + b"}" * 5000)),
    Damage("not-an-object", write_device_file(b"[1, 2, 3]")),
    Damage("json-null", write_device_file(b"null")),
    Damage("empty-file", write_device_file(b"")),
    Damage("truncated-record", truncate("device.json", 0.5)),
    Damage("binary-garbage", write_device_file(bytes(range(256)) * 4)),
    Damage("nul-bytes", write_device_file(b"\0" * 64)),
    Damage("too-large", write_device_file(b" " * (1024 * 1024) + b"{}")),
    Damage("device-code-a-number", edit_record(device_code=5)),
    Damage("device-code-bad-base64", edit_record(device_code="atd1-" + "!" * 91), NEEDS_THE_RECORD),
    # An integer too long for Python to convert (over 4300 digits) is a ValueError too.
    Damage("format-a-huge-number", write_device_file(b'{"format": ' + b"1" * 5000 + b"}")),
    Damage("format-a-string", edit_record(format="1")),
    Damage("format-true", edit_record(format=True)),
    Damage("seed-storage-unknown", edit_record(seed_storage="cloud")),
    Damage("extra-lock-a-string", edit_record(is_extra_locked="no")),
    Damage("keyring-without-entry", edit_record(seed_storage="keyring", keyring_entry=None)),
    Damage("missing-device-code", edit_record(device_code=_REMOVE)),
    Damage("missing-seed-storage", edit_record(seed_storage=_REMOVE)),
    Damage("missing-extra-lock-flag", edit_record(is_extra_locked=_REMOVE)),
    Damage("missing-format", edit_record(format=_REMOVE)),
    Damage("record-missing-beside-seed", remove("device.json")),
    Damage("record-a-directory", replace_with_directory("device.json")),
    Damage("record-a-fifo", replace_with_fifo, needs=lambda: hasattr(os, "mkfifo")),
    Damage(
        "record-links-to-dev-zero", link_to("/dev/zero"), needs=lambda: Path("/dev/zero").exists()
    ),
    Damage("record-a-broken-link", link_to("nowhere")),
    Damage("home-is-a-file", home_is_a_file),
    Damage("record-unreadable", unreadable("device.json"), needs=lambda: not IS_ROOT),
    Damage("seed-missing", remove("device-seed"), NEEDS_THE_SEED),
    Damage("seed-truncated", truncate("device-seed", 0.5), NEEDS_THE_SEED),
    Damage(
        "seed-garbage",
        lambda home: (home / "device-seed").write_bytes(b"\xff" * 40),
        NEEDS_THE_SEED,
    ),
    Damage("seed-a-directory", replace_with_directory("device-seed"), NEEDS_THE_SEED),
    Damage("seed-unreadable", unreadable("device-seed"), NEEDS_THE_SEED, lambda: not IS_ROOT),
    # The seed of another device under this one's record: only a check against the record
    # (reveal loads the keys) notices; export-phrase prints what the seed file holds.
    Damage("seed-of-another-device", another_devices_seed, frozenset({REVEAL})),
]


# Damages this platform and user can make: chmod 0 stops no one running as root, so there
# the unreadable files are left out (test_an_unreadable_record_is_one_line_even_as_root
# makes the open itself fail instead).
POSSIBLE_DAMAGES = [damage for damage in DAMAGES if damage.needs()]


def cases() -> Iterator[Any]:
    for damage in POSSIBLE_DAMAGES:
        for command in sorted(damage.breaks):
            yield pytest.param(damage, command, id=f"{damage.name}-{'-'.join(command[:2])}")


@pytest.mark.parametrize(("damage", "command"), list(cases()))
def test_damaged_store_is_one_line_and_left_alone(
    damage: Damage, command: tuple[str, ...], tmp_path: Path, bound_server: BoundSecretServer
) -> None:
    home = tmp_path / "home"
    healthy_store(home)
    damage.apply(home)
    before = snapshot(home)

    outcome = atopos(home, *command)

    assert_one_line_error(outcome, ExitCode.FAILURE)
    assert snapshot(home) == before
    if command == REVEAL:
        # The device is loaded after the challenge and before any ticket: nothing spent.
        assert [path.rsplit("/", 1)[1] for path in bound_server.paths] == ["challenge"]


@pytest.mark.parametrize(
    "damage", POSSIBLE_DAMAGES, ids=[damage.name for damage in POSSIBLE_DAMAGES]
)
@pytest.mark.parametrize("command", ["init", "recover"])
def test_init_and_recover_never_replace_a_damaged_store(
    damage: Damage, command: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    healthy_store(home)
    damage.apply(home)
    before = snapshot(home)

    phrase = seed_to_phrase(OTHER_SEED).encode()
    outcome = atopos(home, "device", command, stdin=phrase)

    # DeviceExists (2) where something is there; a home that is a file cannot be read (1).
    expected = ExitCode.FAILURE if damage.name == "home-is-a-file" else ExitCode.USAGE
    assert_one_line_error(outcome, expected)
    assert snapshot(home) == before


def test_an_unreadable_record_is_one_line_even_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # chmod 0 does not stop root: make the open itself fail the way it would for a user.
    home = tmp_path / "home"
    healthy_store(home)
    real_open = os.open

    def refusing_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if Path(path).name == "device.json":
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    before = snapshot(home)
    outcome = atopos(home, *SHOW)
    assert_one_line_error(outcome, ExitCode.FAILURE)
    assert outcome.stderr == f"Error: Could not read {home / 'device.json'}: permission denied.\n"
    assert snapshot(home) == before


def test_the_phrase_can_still_be_exported_when_only_the_code_is_damaged(tmp_path: Path) -> None:
    # What survives stays usable: the seed is intact, so the phrase that repairs all is there.
    home = tmp_path / "home"
    healthy_store(home)
    edit_record(device_code="atd1-" + "!" * 91)(home)
    outcome = atopos(home, *EXPORT)
    assert outcome.code == ExitCode.OK, outcome.stderr
    assert outcome.stdout.strip() == seed_to_phrase(SEED)


def test_recover_force_repairs_a_damaged_store(tmp_path: Path) -> None:
    # The way out that every damaged-store message names.
    home = tmp_path / "home"
    healthy_store(home)
    write_device_file(nested(5000))(home)
    outcome = atopos(home, "device", "recover", "--force", stdin=seed_to_phrase(SEED).encode())
    assert outcome.code == ExitCode.OK, outcome.stderr
    assert outcome.stdout.strip() == DeviceKeys.from_seed(SEED).public.code
    assert atopos(home, *SHOW).stdout.strip() == DeviceKeys.from_seed(SEED).public.code


class FailingKeyring:
    """A keyring whose backend breaks (D-Bus gone) with a message that must not be shown."""

    def __init__(self, entries: dict[str, str] | None = None, *, fails: bool = False) -> None:
        self.entries = dict(entries or {})
        self.fails = fails

    def get_password(self, service: str, username: str) -> str | None:
        if self.fails:
            raise RuntimeError(f"secret service said {b64url_encode(SEED)}")
        return self.entries.get(username)

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[username] = password

    def delete_password(self, service: str, username: str) -> None:
        del self.entries[username]


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda keyring: keyring.entries.clear(), id="entry-gone"),
        pytest.param(
            lambda keyring: keyring.entries.update(dict.fromkeys(keyring.entries, "not base64!")),
            id="entry-not-base64",
        ),
        pytest.param(
            lambda keyring: keyring.entries.update(dict.fromkeys(keyring.entries, "QUFB")),
            id="entry-not-a-record",
        ),
        pytest.param(lambda keyring: setattr(keyring, "fails", True), id="backend-fails"),
    ],
)
def test_a_damaged_keyring_entry_is_one_line(
    spoil: Callable[[FailingKeyring], None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    keyring = FailingKeyring()
    DeviceStore(home, keyring=keyring).save(SEED)
    assert keyring.entries  # the seed went to the keyring, not to a file
    monkeypatch.setattr(
        DeviceStore,
        "from_environment",
        classmethod(lambda cls, environ=None: cls(home, keyring=keyring)),
    )
    spoil(keyring)
    before = snapshot(home)
    outcome = atopos(home, *EXPORT)
    assert_one_line_error(outcome, ExitCode.FAILURE)
    assert "secret service said" not in outcome.stderr
    assert snapshot(home) == before


# -- the installed command, end to end -------------------------------------------------------


BY_NAME = {damage.name: damage for damage in DAMAGES}


@pytest.mark.parametrize(
    "name", ["nested-100000-deep", "nested-5000-deep", "binary-garbage", "record-a-directory"]
)
def test_the_installed_command_prints_no_traceback(name: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    healthy_store(home)
    BY_NAME[name].apply(home)
    before = snapshot(home)
    env = {**os.environ, "ATOPOS_HOME": str(home), "ATOPOS_KEYRING": "off"}
    env.pop("ATOPOS_DEBUG", None)
    for command in (SHOW, EXPORT):
        result = subprocess.run(
            [ATOPOS, *command], capture_output=True, env=env, timeout=60, check=False
        )
        outcome = Outcome(result.returncode, result.stdout.decode(), result.stderr.decode())
        assert_one_line_error(outcome, ExitCode.FAILURE)
        assert "is damaged" in outcome.stderr
    assert snapshot(home) == before
