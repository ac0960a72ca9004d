"""The decision of scripts/audit_deps.py (the `make test` dependency audit step): a known
vulnerability fails the build; an audit that could not look packages up only warns, unless
AUDIT_STRICT is set."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "audit_deps.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit_deps", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CLEAN = {"name": "starlette", "version": "1.0", "vulns": []}
VULNERABLE = {
    "name": "h11",
    "version": "0.14.0",
    "vulns": [{"id": "GHSA-vqfr-h8mv-ghfj", "fix_versions": ["0.16.0"], "aliases": []}],
}
SKIPPED = {"name": "typer", "skip_reason": "Dependency not found on PyPI and could not be audited"}


@pytest.mark.parametrize("is_strict", [False, True])
def test_a_vulnerability_fails_the_build(
    is_strict: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _script().decide({"dependencies": [CLEAN, VULNERABLE]}, is_strict) == 1
    assert "VULNERABLE h11 0.14.0: GHSA-vqfr-h8mv-ghfj (0.16.0)" in capsys.readouterr().out


def test_a_clean_audit_passes() -> None:
    assert _script().decide({"dependencies": [CLEAN]}, is_strict=True) == 0


def test_packages_that_could_not_be_audited_warn_loudly_and_fail_only_when_strict(
    capsys: pytest.CaptureFixture[str],
) -> None:
    script = _script()
    assert script.decide({"dependencies": [CLEAN, SKIPPED]}, is_strict=False) == 0
    assert "1 of 2 locked packages could not be audited" in capsys.readouterr().err
    assert script.decide({"dependencies": [CLEAN, SKIPPED]}, is_strict=True) == 1
