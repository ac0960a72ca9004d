"""The container image is built from Containerfile and serves the README's tour.

No registry is reachable, so the base is a Debian bookworm with Python made here by
`mmdebstrap` and imported into a podman store of the test's own; `podman build
--isolation=chroot` builds the image from it (pip reaches PyPI as in any build). Containers
cannot run in this sandbox, so the image's file system is exported and the server runs from
it under `chroot`, as the image's user, with the root file system read-only and only the
data directory writable, as compose.yaml runs it."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from bench.harness import free_port

from tests.servers import wait_healthy

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/atopos-test"
BASE = "localhost/atopos-test-base"
DEV_TOOLS = ("pytest", "mypy", "ruff", "playwright", "hypothesis", "schemathesis", "pip_audit")

pytestmark = [
    pytest.mark.skipif(
        not all(map(shutil.which, ("podman", "mmdebstrap", "unshare", "chroot"))),
        reason="needs podman and mmdebstrap (scripts/system-deps.sh), unshare and chroot",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="chroot and mounts need root"),
    pytest.mark.timeout(900),
]

# Runs in a mount namespace of its own: the image's root becomes a read-only mount with a
# writable /data (the image's own directory, its owner and mode as built), a /tmp in
# memory and the machine's /dev; then the command runs chrooted there as the image's user.
_ENTER_IMAGE = """
set -eu
root=$1 user=$2; shift 2
mount --bind "$root" "$root"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o size=16m,mode=1777 tmpfs "$root/tmp"
mount --bind "$root/data" "$root/data"
mount -o remount,bind,ro "$root"
exec chroot --userspec="$user" "$root" /usr/bin/env -i "$@"
"""


@dataclasses.dataclass
class ExportedImage:
    """The image's file system, unpacked, and what its configuration says to run."""

    rootfs: Path
    config: dict[str, object]
    healthcheck: dict[str, object]
    seconds: dict[str, float]

    @property
    def user(self) -> str:
        return str(self.config["User"])

    @property
    def env(self) -> list[str]:
        env = self.config["Env"]
        assert isinstance(env, list)
        return [str(item) for item in env]

    def command(self, *args: str, env: dict[str, str] | None = None) -> list[str]:
        """argv that runs `args` inside the image, with the image's environment."""
        extra = [f"{key}={value}" for key, value in (env or {}).items()]
        return [
            "unshare", "--mount", "--fork", "sh", "-c", _ENTER_IMAGE, "enter-image",
            str(self.rootfs), self.user, *self.env, *extra, *args,
        ]  # fmt: skip

    def run(self, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(self.command(*args), input=stdin, capture_output=True, timeout=120)


def _timed(seconds: dict[str, float], step: str, run: Callable[[], object]) -> None:
    started = time.monotonic()
    run()
    seconds[step] = time.monotonic() - started


def _host_sources() -> list[str]:
    """The machine's own apt sources, for mmdebstrap: the same mirror apt-get uses here."""
    candidates = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
    return [
        str(path)
        for path in candidates
        if path.is_file() and path.suffix in (".list", ".sources") and path.stat().st_size
    ]


def _build_args() -> list[str]:
    """This machine's CAs for pip in the build, in case it reaches PyPI through a
    TLS-inspecting proxy (pip would trust only its own bundle otherwise)."""
    cert = os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt"
    if not Path(cert).is_file():
        return []
    return ["--volume", f"{cert}:/run/host-ca.crt:ro", "--build-arg", "PIP_CERT=/run/host-ca.crt"]


# The session's, not the module's: pytest-xdist may run another module's test between this
# module's two, and a module fixture would then be built again (about 100 s, seen in CI).
@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExportedImage]:
    tmp = tmp_path_factory.mktemp("container")
    # podman refuses a runroot path over 50 characters, which tmp_path's can be (pytest-xdist).
    runroot = Path(tempfile.mkdtemp(prefix="atopos-podman-"))
    # A podman store of the test's own: nothing of the machine's store is used or left.
    podman = [
        "podman", "--root", str(tmp / "storage"), "--runroot", str(runroot),
        "--cgroup-manager", "cgroupfs", "--events-backend", "none",
    ]  # fmt: skip
    seconds: dict[str, float] = {}

    def sh(*argv: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run(argv, capture_output=True, timeout=600, **kwargs)  # type: ignore[call-overload]
        assert done.returncode == 0, (argv, done.stderr.decode(errors="replace")[-4000:])
        return done  # type: ignore[no-any-return]

    base_tar = tmp / "base.tar"
    try:
        _timed(seconds, "mmdebstrap", lambda: sh(
            "mmdebstrap", "--variant=minbase", "--mode=root", "--include=python3,python3-venv",
            "bookworm", str(base_tar), *_host_sources(), stdin=subprocess.DEVNULL,
        ))  # fmt: skip
        _timed(seconds, "import", lambda: sh(*podman, "import", str(base_tar), BASE))
        _timed(seconds, "build", lambda: sh(
            *podman, "build", "--isolation=chroot", "--format", "docker",
            "--build-arg", f"BASE={BASE}", *_build_args(), "--tag", IMAGE, str(ROOT),
        ))  # fmt: skip
        (inspected,) = json.loads(sh(*podman, "image", "inspect", IMAGE).stdout)
        rootfs = tmp / "rootfs"
        rootfs.mkdir()

        def export() -> None:
            container = sh(*podman, "create", IMAGE).stdout.decode().strip()
            archive = tmp / "image.tar"
            sh(*podman, "export", "--output", str(archive), container)
            sh(*podman, "rm", container)
            # GNU tar as root keeps owners, modes (setuid bits too) and device files as built.
            sh("tar", "--extract", "--numeric-owner", "--file", str(archive), "-C", str(rootfs))
            archive.unlink()

        _timed(seconds, "export", export)
        yield ExportedImage(rootfs, inspected["Config"], inspected["Healthcheck"], seconds)
    finally:
        # Unmounts and removes every layer of the test's store (pytest removes the rest).
        subprocess.run([*podman, "rmi", "--all", "--force"], capture_output=True, timeout=120)
        shutil.rmtree(runroot, ignore_errors=True)


@contextlib.contextmanager
def _serving(image: ExportedImage, tmp_path: Path) -> Iterator[str]:
    """The image's server, as its CMD runs it but on a free loopback port of this machine."""
    cmd = image.config["Cmd"]
    # In a container, all of its interfaces; here, the machine's: loopback instead.
    assert cmd == ["atopos", "serve", "--host", "0.0.0.0", "--port", "8080"]  # noqa: S104
    port = free_port()
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            image.command("atopos", "serve", "--host", "127.0.0.1", "--port", str(port)),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: unshare, chroot and the node
        )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_healthy(url, process, timeout=60)
        except (RuntimeError, TimeoutError) as error:
            raise AssertionError(log_path.read_text(errors="replace")) from error
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_the_image_runs_as_a_user_checks_its_health_and_has_no_dev_tools(
    image: ExportedImage, report_line: Callable[[str], None]
) -> None:
    report_line(
        "container image: "
        + ", ".join(f"{step} {seconds:.1f} s" for step, seconds in image.seconds.items())
        + f", {sum(image.seconds.values()):.1f} s in all"
    )
    assert image.user == "10001:10001"
    test = image.healthcheck["Test"]
    assert isinstance(test, list)
    assert "http://127.0.0.1:8080/healthz" in " ".join(test)
    assert "ATOPOS_DATA=/data" in image.env
    data = image.rootfs / "data"
    assert (data.stat().st_uid, data.stat().st_gid, data.stat().st_mode & 0o777) == (
        10001, 10001, 0o700,
    )  # fmt: skip
    (site,) = (image.rootfs / "opt" / "atopos" / ".venv" / "lib").glob("python3*/site-packages")
    installed = {path.name.split("-")[0].lower() for path in site.iterdir()}
    for tool in DEV_TOOLS:
        assert tool not in installed, f"{tool} is in the image"
    assert "pip" not in installed
    assert {"atopos", "cryptography", "uvicorn", "starlette"} <= installed
    assert (site / "atopos" / "web" / "pages").is_dir()


def test_the_readme_tour_from_the_images_file_system(image: ExportedImage, tmp_path: Path) -> None:
    with _serving(image, tmp_path) as url:
        page = httpx.get(f"{url}/", timeout=10)
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        # The tour, with the image's own CLI.
        created = image.run("atopos", "--server", url, "secret", "create", stdin=b"hi\n")
        assert created.returncode == 0, created.stderr
        link = created.stdout.decode().strip()
        assert link.startswith(f"{url}/s/")
        revealed = image.run("atopos", "secret", "reveal", link)
        assert revealed.returncode == 0, revealed.stderr
        assert revealed.stdout == b"hi\n"
        again = image.run("atopos", "secret", "reveal", link)
        assert again.returncode == 3
        assert b"This secret does not exist" in again.stderr
        # The root file system is read-only; the database went to /data.
        tried = image.run("python3", "-c", "open('/opt/atopos/x', 'w')")
        assert b"Read-only file system" in tried.stderr
    assert (image.rootfs / "data" / "atopos.db").is_file()
