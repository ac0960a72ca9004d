"""Exit codes and error sentences: one mapping, one line on stderr, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from atopos import __version__
from atopos.cli.exits import ExitCode, describe, exit_code_for
from atopos.cli.main import run
from atopos.client.failures import error_for
from atopos.client.keystore import DeviceStoreDamaged
from atopos.crypto.errors import (
    CryptoError,
    DecryptionFailed,
    PassphraseRequired,
    UnsupportedEnvelope,
)
from atopos.errors import (
    AnswerTooLarge,
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
from atopos.protocol.answers import Failure, FailureKind


def invoke(args: list[str], *, debug: bool = False) -> tuple[int, str, str]:
    env = {"ATOPOS_SERVER": None, "ATOPOS_DEBUG": "1" if debug else None}
    with CliRunner().isolation(env=env) as (stdout, stderr, _):
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
        (DeviceStoreDamaged(Path("/home")), ExitCode.FAILURE),
        (OSError(28, "No space left on device"), ExitCode.FAILURE),
        (ValueError("boom"), ExitCode.INTERNAL),
        (RecursionError(), ExitCode.INTERNAL),
        (MemoryError(), ExitCode.INTERNAL),
    ],
)
def test_exit_codes(error: BaseException, code: ExitCode) -> None:
    assert exit_code_for(error) == code


def test_exit_code_values_match_design() -> None:
    assert [int(code) for code in ExitCode] == [0, 1, 2, 3, 4, 5, 70, 130]


def test_exit_codes_are_the_documented_ones() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
    table = docs.read_text("utf-8").split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {
        int(cell)
        for line in table.splitlines()
        if line.startswith("| ") and (cell := line.split("|")[1].strip()).isdigit()
    }
    assert documented == {int(code) for code in ExitCode}


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
    assert "ATOPOS_DEBUG=1" in sentence


def test_version() -> None:
    assert invoke(["--version"]) == (0, f"atopos {__version__}\n", "")


def test_typer_usage_errors_exit_2() -> None:
    code, stdout, stderr = invoke(["secret", "create", "--views", "0"])
    assert code == ExitCode.USAGE
    assert stdout == ""
    assert "--views" in stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["secret", "create", "--views", "0"], "Invalid value for '--views'"),
        (["secret", "reveal"], "Missing argument"),
        (["--bogus"], "No such option: --bogus"),
        (["secret", "frobnicate"], "No such command 'frobnicate'"),
        (["secret", "create", "--file", "/nonexistent/x"], "does not exist"),
        (["secret", "reveal", "x", "--passphrase-file", "/"], "is a directory"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], says: str) -> None:
    code, stdout, stderr = invoke(args)
    assert code == ExitCode.USAGE
    assert stdout == ""
    assert stderr.startswith("Error: ")
    assert stderr.count("\n") == 1
    assert says in stderr
    assert "--help`" in stderr  # where to look next, in the same line


def test_no_args_prints_the_help() -> None:
    code, stdout, stderr = invoke(["device"])
    assert code == ExitCode.USAGE
    assert "export-phrase" in stdout + stderr
    assert "Error" not in stderr


def test_unknown_command_exits_2() -> None:
    assert invoke(["secret", "frobnicate"])[0] == ExitCode.USAGE


def test_our_usage_errors_are_one_line() -> None:
    code, stdout, stderr = invoke(["secret", "reveal", "https://atopos.example/s/x#y"])
    assert code == ExitCode.USAGE
    assert stdout == ""
    assert stderr == "Error: The secret id in the share link is damaged; copy the whole link.\n"


INTERNAL_LINE = (
    "Error: Internal error ({}); this is a bug in Atopos, please report it "
    "(run again with ATOPOS_DEBUG=1 to see where it happened).\n"
)


class Surprise(BaseException):
    """Not even an Exception (like asyncio.CancelledError): the boundary catches it too."""


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("internal detail hunter2"),
        RecursionError("maximum recursion depth exceeded hunter2"),
        MemoryError("hunter2"),
        UnicodeDecodeError("utf-8", b"hunter2\xff", 7, 8, "hunter2"),
        Surprise("hunter2"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_no_traceback_for_unexpected_errors(
    error: BaseException, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(_: str) -> None:
        raise error

    monkeypatch.setattr("atopos.client.links.parse_share_link", explode)
    code, stdout, stderr = invoke(["secret", "reveal", "anything"])
    assert (code, stdout) == (ExitCode.INTERNAL, "")
    assert stderr == INTERNAL_LINE.format(type(error).__name__)
    assert "hunter2" not in stderr


def test_debugging_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(_: str) -> None:
        raise RuntimeError("internal detail")

    monkeypatch.setattr("atopos.client.links.parse_share_link", explode)
    code, _, stderr = invoke(["secret", "reveal", "anything"], debug=True)
    assert code == ExitCode.INTERNAL
    assert stderr.startswith("Traceback")
    assert "RuntimeError: internal detail" in stderr
    assert stderr.endswith(INTERNAL_LINE.format("RuntimeError"))


def test_a_message_is_one_line_whatever_it_quotes(monkeypatch: pytest.MonkeyPatch) -> None:
    # A path holding a newline or a terminal escape must not break the one-line promise.
    def unreadable(_: str) -> None:
        raise PermissionError(13, "Permission denied", "/tmp/a\nb\x1b[31m")

    monkeypatch.setattr("atopos.client.links.parse_share_link", unreadable)
    code, _, stderr = invoke(["secret", "reveal", "anything"])
    assert code == ExitCode.FAILURE
    assert stderr == "Error: Could not use /tmp/a\\nb\\x1b[31m: Permission denied.\n"


def test_the_console_script_prints_one_line_for_a_bug(tmp_path: Path) -> None:
    # main() as the installed command runs it: a fresh interpreter, sys.exit, the final
    # flush; a RecursionError from a deep structure stands for any unexpected exception.
    script = (
        "import sys, atopos.client.links as links\n"
        "def deep(_):\n"
        "    def down(n): return down(n + 1)\n"
        "    down(0)\n"
        "links.parse_share_link = deep\n"
        "sys.argv = ['atopos', 'secret', 'reveal', 'x']\n"
        "from atopos.cli.main import main\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "ATOPOS_HOME": str(tmp_path)},
    )
    assert result.returncode == ExitCode.INTERNAL
    assert result.stdout == b""
    assert result.stderr.decode() == INTERNAL_LINE.format("RecursionError")


def test_ctrl_c_exits_130_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(_: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("atopos.client.links.parse_share_link", interrupted)
    code, stdout, stderr = invoke(["secret", "reveal", "anything"])
    assert (code, stdout) == (ExitCode.INTERRUPTED, "")
    assert "Traceback" not in stderr


def test_an_answer_over_the_mixnets_cap_says_to_reveal_without_the_mixnet() -> None:
    """The SDK's sentence names no option; the CLI, whose only answer cap is --mixnet's reply
    blocks, says what to do instead, with the size and the cap."""
    sdk_sentence = "This secret is 20123 bytes, more than the 16000 bytes (...); no view was spent."
    error = error_for(Failure(FailureKind.TOO_LARGE, sdk_sentence, size=20123, limit=16000))
    assert isinstance(error, AnswerTooLarge)
    sentence = describe(error)
    assert "20123 bytes" in sentence
    assert "16000 bytes" in sentence
    assert sentence.endswith("no view was spent: reveal it without --mixnet.")
    assert exit_code_for(error) == ExitCode.USAGE
    # A 413 without a cap of the reader's (a create over the server's limit) keeps its words.
    plain = error_for(
        Failure(FailureKind.TOO_LARGE, "The secret is larger than this server accepts.")
    )
    assert not isinstance(plain, AnswerTooLarge)
    assert describe(plain) == "The secret is larger than this server accepts."
