"""`atopos device …` in-process: the terminal paths (prompts, confirmations) that the
subprocess tests in tests/integration/test_device_binding.py cannot reach without a TTY."""

from __future__ import annotations

from pathlib import Path

import pytest

import atopos.cli.device as device_cli
from atopos.cli.exits import ExitCode, describe, exit_code_for
from atopos.cli.main import run
from atopos.client.keystore import DeviceStore
from atopos.crypto.errors import DeviceRequired
from atopos.crypto.kdf import Argon2Params

CHEAP = Argon2Params(memory_kib=8, iterations=1, lanes=1)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("ATOPOS_HOME", str(home))
    monkeypatch.setenv("ATOPOS_KEYRING", "off")
    # Extra Lock at its real cost would make each unlock take half a second.
    monkeypatch.setattr(
        DeviceStore,
        "from_environment",
        classmethod(lambda cls, environ=None: cls(home, keyring=None, extra_lock_argon2=CHEAP)),
    )
    return home


class Terminal:
    """Stands in for a person at a terminal: answers prompts in order, records them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answers: list[str] = []
        self.prompts: list[str] = []
        monkeypatch.setattr(device_cli, "is_tty", lambda stream: True)
        monkeypatch.setattr(device_cli.getpass, "getpass", self._ask)

    def _ask(self, prompt: str = "") -> str:
        self.prompts.append(prompt)
        if not self.answers:
            raise EOFError
        return self.answers.pop(0)


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> Terminal:
    return Terminal(monkeypatch)


def test_init_with_extra_lock_asks_twice(
    home: Path, terminal: Terminal, capsys: pytest.CaptureFixture[str]
) -> None:
    terminal.answers = ["one", "two"]
    assert run(["device", "init", "--extra-lock"]) == ExitCode.USAGE
    assert "differ" in capsys.readouterr().err
    assert not (home / "device.json").exists()
    terminal.answers = ["same", "same"]
    assert run(["device", "init", "--extra-lock"]) == ExitCode.OK
    code = capsys.readouterr().out.strip()
    assert code.startswith("atd1-")
    assert terminal.prompts == [
        "New Extra Lock passphrase: ",
        "Repeat the passphrase: ",
        "New Extra Lock passphrase: ",
        "Repeat the passphrase: ",
    ]


def test_unlock_on_a_terminal_allows_three_tries(
    home: Path, terminal: Terminal, capsys: pytest.CaptureFixture[str]
) -> None:
    terminal.answers = ["pw", "pw"]
    assert run(["device", "init", "--extra-lock"]) == ExitCode.OK
    capsys.readouterr()
    terminal.answers = ["bad", "pw"]
    assert run(["device", "export-phrase"]) == ExitCode.OK
    assert len(capsys.readouterr().out.split()) == 24
    terminal.answers = ["bad", "worse", "worst"]
    assert run(["device", "export-phrase"]) == ExitCode.REFUSED
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == "Error: The Extra Lock passphrase is wrong."
    assert terminal.prompts[-3:] == [
        "Extra Lock passphrase: ",
        "Wrong passphrase, try again: ",
        "Wrong passphrase, try again: ",
    ]


def test_recover_reads_a_hidden_prompt_on_a_terminal(
    home: Path, terminal: Terminal, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["device", "init"]) == ExitCode.OK
    code = capsys.readouterr().out.strip()
    assert run(["device", "export-phrase"]) == ExitCode.OK
    phrase = capsys.readouterr().out.strip()
    terminal.answers = [phrase]
    assert run(["device", "recover", "--force"]) == ExitCode.OK
    assert capsys.readouterr().out.strip() == code
    assert terminal.prompts == ["Recovery phrase (24 words): "]


def test_wipe_asks_first_on_a_terminal(
    home: Path, terminal: Terminal, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(["device", "init"]) == ExitCode.OK
    monkeypatch.setattr(device_cli.typer, "confirm", lambda *args, **kwargs: False)
    assert run(["device", "wipe"]) == ExitCode.FAILURE
    assert (home / "device.json").exists()
    assert run(["device", "wipe", "--yes"]) == ExitCode.OK
    assert not (home / "device.json").exists()


def test_passphrase_file_without_extra_lock_is_a_usage_error(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    passphrase = tmp_path / "pw"
    passphrase.write_text("pw\n")
    assert run(["device", "init", "--passphrase-file", str(passphrase)]) == ExitCode.USAGE
    assert "--extra-lock" in capsys.readouterr().err


def test_extra_lock_without_a_terminal_needs_a_file(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["device", "init", "--extra-lock"]) == ExitCode.USAGE
    assert "--passphrase-file" in capsys.readouterr().err


def test_device_required_is_a_refusal_in_one_sentence() -> None:
    assert exit_code_for(DeviceRequired()) == ExitCode.REFUSED
    assert describe(DeviceRequired()).count(".") == 1
