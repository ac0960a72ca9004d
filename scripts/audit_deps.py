"""Audit the locked dependencies with pip-audit; `make test` and `make audit` run this.

    .venv/bin/python scripts/audit_deps.py

Runs `pip-audit -r requirements.lock --require-hashes --disable-pip` (the lock as it is, no
resolver, no install) against PyPI's vulnerability data, and then decides:

- a known vulnerability in any locked package: print it and exit 1 (the build fails);
- pip-audit could not run at all (no network, PyPI unreachable), or it could not look some
  packages up: print a loud warning and exit 0, so an offline machine can still test.
  `AUDIT_STRICT=1` turns both into failures (for CI that has the network).

`AUDIT_IGNORE="GHSA-xxxx PYSEC-yyyy"` skips vulnerabilities that were assessed and do not
apply; say why in docs/verification.md when you use it. See docs/verification.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PIP_AUDIT = Path(sys.executable).with_name("pip-audit")


def main() -> int:
    is_strict = os.environ.get("AUDIT_STRICT", "") not in ("", "0")
    ignored = os.environ.get("AUDIT_IGNORE", "").split()
    with tempfile.TemporaryDirectory() as scratch:
        report_path = Path(scratch) / "audit.json"
        argv = [
            str(PIP_AUDIT),
            "--requirement",
            str(ROOT / "requirements.lock"),
            "--require-hashes",
            "--disable-pip",
            "--progress-spinner",
            "off",
            "--format",
            "json",
            "--output",
            str(report_path),
            *(arg for vuln in ignored for arg in ("--ignore-vuln", vuln)),
        ]
        try:
            done = subprocess.run(  # noqa: S603 - our own venv's pip-audit, fixed arguments
                argv, capture_output=True, text=True, timeout=600, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return _not_run(f"pip-audit did not finish: {error}", is_strict)
        try:
            report = json.loads(report_path.read_text())
        except (OSError, ValueError):
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return _not_run("pip-audit gave no report: " + " / ".join(tail), is_strict)
    return decide(report, is_strict)


def decide(report: dict[str, Any], is_strict: bool) -> int:
    """The exit status for one pip-audit JSON report (and print what it found)."""
    dependencies = report.get("dependencies", [])
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d for d in dependencies if "skip_reason" in d]
    audited = len(dependencies) - len(skipped)
    print(
        f"dependency audit: {len(dependencies)} locked packages, {audited} audited, "
        f"{len(vulnerable)} vulnerable, {len(skipped)} not audited"
    )
    for dependency in vulnerable:
        for vuln in dependency["vulns"]:
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no fix yet"
            print(
                f"  VULNERABLE {dependency['name']} {dependency['version']}: {vuln['id']} ({fixed})"
            )
    if vulnerable:
        return 1
    if skipped:
        reasons = sorted({d["skip_reason"].split(":")[0] for d in skipped})
        _warn(
            f"{len(skipped)} of {len(dependencies)} locked packages could not be audited "
            f"({'; '.join(reasons)}). The audit proves nothing about them."
        )
        return 1 if is_strict else 0
    return 0


def _warn(message: str) -> None:
    bar = "!" * 78
    print(f"{bar}\nWARNING: {message}\n{bar}", file=sys.stderr)


def _not_run(reason: str, is_strict: bool) -> int:
    _warn(f"THE DEPENDENCY AUDIT DID NOT RUN. {reason}")
    return 1 if is_strict else 0


if __name__ == "__main__":
    sys.exit(main())
