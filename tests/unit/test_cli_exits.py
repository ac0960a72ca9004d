"""Exit codes and error sentences: one mapping, one line on stderr, never a traceback."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from atopos import __version__
from atopos.cli.exits import ExitCode, describe, exit_code_for
from atopos.cli.main import run
from atopos.crypto.errors import (
    CryptoError,
    DecryptionFailed,
    PassphraseRequired,
    UnsupportedEnvelope,
)
from atopos.errors import (
    AtoposError,
    Gone,
    InvalidInput,
    NetworkError,
    RateLimited,
    Refused,
    StorageFull,
    TooLarge,
    Unavailable,
)


def invoke(args: list[str]) -> tuple[int, str, str]:
    with CliRunner().isolation(env={"ATOPOS_SERVER": None}) as (stdout, stderr, _):
        code = run(args)
        sys.stdout.flush()
        sys.stderr.flush()
        return code, stdout.getvalue().decode(), stderr.getvalue().decode()


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidInput("x."), ExitCode.USAGE),
        (TooLarge("x."), ExitCode.USAGE),
        (Gone("x."), ExitCode.GONE),
        (Refused("x."), ExitCode.REFUSED),
        (RateLimited("x.", retry_after=3), ExitCode.REFUSED),
        (Unavailable("x."), ExitCode.NETWORK),
        (StorageFull("x."), ExitCode.NETWORK),
        (NetworkError("x."), ExitCode.NETWORK),
        (DecryptionFailed(), ExitCode.REFUSED),
        (UnsupportedEnvelope(), ExitCode.REFUSED),
        (PassphraseRequired(), ExitCode.REFUSED),
        (CryptoError(), ExitCode.REFUSED),
        (KeyboardInterrupt(), ExitCode.INTERRUPTED),
        (AtoposError("x."), ExitCode.FAILURE),
        (OSError(28, "No space left on device"), ExitCode.FAILURE),
        (ValueError("boom"), ExitCode.FAILURE),
    ],
)
def test_exit_codes(error: BaseException, code: ExitCode) -> None:
    assert exit_code_for(error) == code


def test_exit_code_values_match_design() -> None:
    assert [int(code) for code in ExitCode] == [0, 1, 2, 3, 4, 5, 130]


def test_sentences() -> None:
    assert describe(Gone("It is gone.")) == "It is gone."
    assert describe(PassphraseRequired()) == (
        "This secret needs a passphrase; pass --passphrase-file."
    )
    assert "could not be decrypted" in describe(DecryptionFailed())
    assert "upgrade" in describe(UnsupportedEnvelope())
    assert describe(PermissionError(13, "Permission denied", "/x/y")) == (
        "Could not use /x/y: Permission denied."
    )


def test_unexpected_errors_name_only_their_type() -> None:
    # The message of an unexpected exception may hold anything, plaintext included.
    sentence = describe(ValueError("the secret is hunter2"))
    assert "hunter2" not in sentence
    assert "ValueError" in sentence


def test_version() -> None:
    assert invoke(["--version"]) == (0, f"atopos {__version__}\n", "")


def test_typer_usage_errors_exit_2() -> None:
    code, stdout, stderr = invoke(["secret", "create", "--views", "0"])
    assert code == ExitCode.USAGE
    assert stdout == ""
    assert "--views" in stderr


def test_unknown_command_exits_2() -> None:
    assert invoke(["secret", "frobnicate"])[0] == ExitCode.USAGE


def test_our_usage_errors_are_one_line() -> None:
    code, stdout, stderr = invoke(["secret", "reveal", "https://atopos.example/s/x#y"])
    assert code == ExitCode.USAGE
    assert stdout == ""
    assert stderr == "Error: The secret id in the share link is damaged; copy the whole link.\n"


def test_no_traceback_for_unexpected_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(_: str) -> None:
        raise RuntimeError("internal detail")

    monkeypatch.setattr("atopos.client.links.parse_share_link", explode)
    code, _, stderr = invoke(["secret", "reveal", "anything"])
    assert code == ExitCode.FAILURE
    assert stderr == "Error: Unexpected error (RuntimeError); please report it.\n"


def test_ctrl_c_exits_130_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(_: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("atopos.client.links.parse_share_link", interrupted)
    code, stdout, stderr = invoke(["secret", "reveal", "anything"])
    assert (code, stdout) == (ExitCode.INTERRUPTED, "")
    assert "Traceback" not in stderr
