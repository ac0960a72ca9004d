"""A 1 GiB + 1 byte file secret through the real CLI and a real `atopos serve` on SQLite, in
constant memory on both sides (issue 19).

The file is written and hashed in 1 MiB blocks, so the test itself never holds it. Peak memory
is the kernel's: the server's VmHWM from /proc while it still runs, each CLI's ru_maxrss as seen
by a small parent process. Measured here: server about 72 MiB, CLI about 60 MiB, the same for
1 MiB, 256 MiB and 1 GiB files. The bound, 150 MiB, leaves room for allocator and library
variation and is far below what buffering would cost (buffering the reveal or the file read
takes either process past 1 GiB): streaming keeps only a few 1 MiB chunks in flight.

Everything lives under /dev/shm when it has 4 GiB free (tmpfs), else in tmp_path: the file,
the database with its WAL and the revealed file (at most two of them at once) would otherwise
spend most of the time on the disk. The whole test takes about 20 s here on tmpfs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import ATOPOS, ServerProcess

GIB = 1024 * 1024 * 1024
MIB = 1024 * 1024
FILE_BYTES = GIB + 1
PEAK_RSS_BOUND = 150 * MIB
# Two 1 GiB copies at most at once (file and database, then database and revealed file).
SCRATCH_NEEDED = 4 * GIB
_BLOCK = MIB


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A directory on tmpfs when there is one (see the module docstring)."""
    shm = Path("/dev/shm")
    if not (
        shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > SCRATCH_NEEDED
    ):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir=shm, prefix="atopos-large-") as name:
        yield Path(name)


def _write_random_file(path: Path, size: int) -> str:
    """Write `size` random bytes block by block; return their SHA-256 hex digest."""
    digest = hashlib.sha256()
    with path.open("wb") as file:
        left = size
        while left:
            block = os.urandom(min(_BLOCK, left))
            digest.update(block)
            file.write(block)
            left -= len(block)
    return digest.hexdigest()


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


# Runs the CLI from a fresh, small Python and prints the CLI's peak RSS (KiB) last on stderr.
# Measuring from pytest itself would not do: a child's ru_maxrss starts from the RSS of the
# process it was forked from (Linux keeps the high-water mark across exec), and pytest's
# resident memory is larger than the CLI's.
_MEASURE = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:], check=False).returncode
sys.stderr.write("\\n%d" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(code)
"""


def _run_measured(*args: str) -> tuple[int, bytes, bytes, int]:
    """Run the CLI; return its exit code, stdout, stderr and peak RSS in bytes."""
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, ATOPOS, *args],
        capture_output=True,
        timeout=300,
        check=False,
    )
    err, _, peak_kib = done.stderr.rpartition(b"\n")
    return done.returncode, done.stdout, err, int(peak_kib) * 1024


def _peak_rss(pid: int) -> int:
    """The process's high-water mark of resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.fixture
def large_server(scratch: Path) -> Iterator[ServerProcess]:
    data = scratch / "data"
    data.mkdir()
    server = ServerProcess(
        data,
        scratch / "server.log",
        env={
            "ATOPOS_MAX_SIZE": "2G",
            "ATOPOS_STORAGE_QUOTA": "0",
            "ATOPOS_UPLOAD_QUOTA_PER_HOUR": "0",
            # The test's own logs stay at the default level: nothing per chunk.
            "ATOPOS_LOG_LEVEL": "info",
        },
    ).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
def test_a_1_gib_file_round_trips_in_constant_memory(
    large_server: ServerProcess, scratch: Path
) -> None:
    source = scratch / "big.bin"
    expected = _write_random_file(source, FILE_BYTES)
    assert large_server.process is not None
    server_pid = large_server.process.pid

    code, out, err, create_peak = _run_measured(
        "--server", large_server.url, "secret", "create", "--file", str(source)
    )
    assert code == 0, err.decode(errors="replace")
    link = out.decode().strip()
    source.unlink()  # tmpfs is memory: keep at most two copies at once

    revealed = scratch / "revealed.bin"
    code, _, err, reveal_peak = _run_measured("secret", "reveal", link, "-o", str(revealed))
    assert code == 0, err.decode(errors="replace")
    server_peak = _peak_rss(server_pid)

    assert revealed.stat().st_size == FILE_BYTES
    assert _sha256_of(revealed) == expected
    assert server_peak < PEAK_RSS_BOUND, f"server peak RSS {server_peak / MIB:.0f} MiB"
    assert create_peak < PEAK_RSS_BOUND, f"create peak RSS {create_peak / MIB:.0f} MiB"
    assert reveal_peak < PEAK_RSS_BOUND, f"reveal peak RSS {reveal_peak / MIB:.0f} MiB"
    # The view is spent and the chunks are gone with it.
    code, _, _, _ = _run_measured("secret", "reveal", link, "-o", str(scratch / "again.bin"))
    assert code == 3
