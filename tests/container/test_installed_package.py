"""The wheel installs as pipx installs it: into a fresh venv of its own, with its console
script, away from the source tree; that `atopos` serves the web pages and the README's tour.
(The venv gets the runtime lock first, so that the test needs no resolver and no network
beyond uv's cache.)"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from bench.harness import free_port

from tests.servers import wait_healthy

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).with_name("uv")


@pytest.fixture(scope="module")
def installed_atopos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not UV.exists():
        pytest.skip("uv (installed by `make`) is needed to build and install the wheel")
    tmp = tmp_path_factory.mktemp("pipx")
    subprocess.run(
        [str(UV), "build", "--wheel", "--out-dir", str(tmp / "dist"), "--quiet", str(ROOT)],
        check=True,
        timeout=300,
    )
    (wheel,) = (tmp / "dist").glob("atopos-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    for args in (
        ["--require-hashes", "-r", str(ROOT / "requirements-runtime.lock")],
        ["--no-deps", str(wheel)],
    ):
        subprocess.run(
            [str(UV), "pip", "install", "--quiet", "--python", python, *args],
            check=True,
            timeout=300,
            cwd=tmp,
        )
    return venv / "bin" / "atopos"


@pytest.fixture(scope="module")
def served(installed_atopos: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("pipx-data")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATOPOS_", "PYTHON"))}
    log = (data / "server.log").open("wb")
    process = subprocess.Popen(
        [str(installed_atopos), "serve", "--port", str(port), "--data", str(data / "db")],
        env={**env, "ATOPOS_RATE_LIMIT": "0"},
        cwd=data,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


def test_the_installed_atopos_comes_from_its_own_venv(installed_atopos: Path) -> None:
    python = installed_atopos.with_name("python")
    where = subprocess.run(
        [str(python), "-c", "import atopos, sys; print(atopos.__file__); print(sys.prefix)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=installed_atopos.parent,
    ).stdout.split()
    assert Path(where[0]).is_relative_to(installed_atopos.parents[1]), where
    assert not Path(where[0]).is_relative_to(ROOT), "atopos came from the source tree"
    site = Path(where[0]).parent
    for tool in ("pytest", "mypy", "ruff", "playwright"):
        assert not (site.parent / tool).exists(), f"{tool} was installed with atopos"


def test_the_installed_atopos_serves_the_pages_and_the_readme_tour(
    installed_atopos: Path, served: str
) -> None:
    for path in ("/", "/static/js/envelope.js"):
        assert httpx.get(f"{served}{path}", timeout=10).status_code == 200, path

    def cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATOPOS_")}
        return subprocess.run(
            [str(installed_atopos), *args],
            input=stdin,
            capture_output=True,
            timeout=60,
            env={**env, "ATOPOS_HOME": str(installed_atopos.parents[2] / "home")},
        )

    created = cli("--server", served, "secret", "create", stdin=b"hi\n")
    assert created.returncode == 0, created.stderr
    link = created.stdout.decode().strip()
    revealed = cli("secret", "reveal", link)
    assert revealed.returncode == 0, revealed.stderr
    assert revealed.stdout == b"hi\n"
    assert cli("secret", "reveal", link).returncode == 3
