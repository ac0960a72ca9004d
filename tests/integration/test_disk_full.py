"""A full disk under `atopos serve` (SQLite): refusals, never a 500 or a corrupt database,
and a clean recovery once there is room again, without a restart.

Two ways to run out of room, so the test means something on any machine:

- `filesystem`: the data directory is a filesystem of 8 MiB (a tmpfs, or failing that an
  ext4 loop file), filled to the last byte with a filler file. SQLite then gets ENOSPC, which
  it reports as SQLITE_FULL: the API must answer 507 `storage_full`. Mounting needs root and
  CAP_SYS_ADMIN; where neither tmpfs nor a loop mount works, this case is skipped (and says so)
  while the next one still runs.
- `file-size-limit`: the server runs under RLIMIT_FSIZE (1 MiB, SIGXFSZ ignored), so a write
  that would grow a file past it fails with EFBIG. SQLite reports that as an I/O error, not
  as "full": the API answers 503 `unavailable`. Raising the limit (prlimit) is the "room
  again". This works unprivileged, everywhere.

In both: every create while full is refused with a JSON error, a Retry-After and the
security headers; status, challenge and ticket (reads) keep working; a reveal either works
or is refused without taking the view; afterwards creates succeed again, every secret has
exactly the views it should, `PRAGMA integrity_check` says ok, and no chunk of the upload
that failed half-way remains after the next start.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from atopos.crypto.base64url import b64url_decode
from atopos.server.middleware import CONTENT_SECURITY_POLICY
from tests.api_client import OCTETS, access_params, envelope, remember, reveal, ticket
from tests.servers import ServerProcess

FILESYSTEM_MIB = 8
FILE_SIZE_LIMIT = 1024 * 1024
LARGE = 2 * 1024 * 1024 + 333  # takes the chunked path (1 MiB chunks)


def _run(*argv: str) -> bool:
    result = subprocess.run(argv, capture_output=True, check=False, timeout=60)
    return result.returncode == 0


@contextlib.contextmanager
def small_filesystem(mount_point: Path, scratch: Path) -> Iterator[str]:
    """Mount a filesystem of FILESYSTEM_MIB at `mount_point`; yields what it is."""
    mount_point.mkdir()
    if _run(
        "mount", "-t", "tmpfs", "-o", f"size={FILESYSTEM_MIB}m,mode=0700", "tmpfs", str(mount_point)
    ):
        kind = "tmpfs"
    else:
        image = scratch / "disk.img"
        with image.open("wb") as handle:
            handle.truncate(FILESYSTEM_MIB * 1024 * 1024)
        if not (
            _run("mkfs.ext4", "-q", "-F", str(image))
            and _run("mount", "-o", "loop", str(image), str(mount_point))
        ):
            pytest.skip(
                "cannot mount a small filesystem here (needs root and CAP_SYS_ADMIN); "
                "the file-size-limit case covers running out of room"
            )
        kind = "ext4 loop file"
    try:
        yield kind
    finally:
        if not _run("umount", str(mount_point)):
            _run("umount", "-l", str(mount_point))


def _fill(directory: Path) -> list[Path]:
    """Write filler files until the filesystem refuses even 512 bytes."""
    fillers = []
    for block in (1024 * 1024, 64 * 1024, 4096, 512):
        path = directory / f"filler-{block}"
        fillers.append(path)
        with contextlib.suppress(OSError), path.open("wb") as handle:
            while True:
                handle.write(b"\0" * block)
                handle.flush()
    return fillers


def _limit_file_size() -> None:
    """In the server child: writes past FILE_SIZE_LIMIT fail with EFBIG instead of a signal."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, resource.RLIM_INFINITY))


def _is_refusal(response: httpx.Response, statuses: tuple[int, ...]) -> bool:
    """A full-storage refusal: the expected status, a JSON error, Retry-After, headers."""
    assert response.status_code in statuses, f"{response.status_code}: {response.text[:200]}"
    assert response.headers["content-type"] == "application/json"
    error = response.json()
    assert set(error) == {"error", "message"}
    assert error["error"] == {507: "storage_full", 503: "unavailable"}[response.status_code]
    assert int(response.headers["retry-after"]) > 0
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["cache-control"] == "no-store"
    return True


def _status(client: httpx.Client, url: str, created: dict[str, str]) -> httpx.Response:
    return client.get(
        f"{url}/api/v1/secrets/{created['id']}/status",
        headers={"authorization": f"Bearer {created['manage_token']}"},
    )


def _create(
    client: httpx.Client, url: str, size: int = 3000, **params: int | str
) -> httpx.Response:
    body, _ = envelope(os.urandom(size))
    return client.post(
        f"{url}/api/v1/secrets", params=access_params(body, **params), content=body, headers=OCTETS
    )


def _scenario(
    server: ServerProcess,
    make_full: Callable[[httpx.Client], list[dict[str, str]]],
    make_room: Callable[[], None],
    refusal: int,
    report_line: Callable[[str], None],
) -> None:
    """The shared script: secrets stored, storage full, refusals and reads, room again."""
    with httpx.Client(timeout=60) as client:
        url = server.url
        existing: list[tuple[dict[str, str], bytes]] = []
        for _ in range(4):
            body, _ = envelope(os.urandom(200))
            response = client.post(
                f"{url}/api/v1/secrets",
                params=access_params(body, views=2),
                content=body,
                headers=OCTETS,
            )
            assert response.status_code == 201
            remember(response.json()["id"], body)
            existing.append((response.json(), body))

        # Secrets acknowledged while filling up count like any other.
        filled_with = make_full(client)

        # Creates are refused, small and large (the large one fails half-way through its
        # chunks), each with a JSON error and Retry-After: never a 500.
        refused = [_create(client, url) for _ in range(10)]
        refused.append(_create(client, url, size=LARGE, kind="file"))
        assert all(_is_refusal(r, (refusal,)) for r in refused)
        assert client.get(f"{url}/healthz").status_code == 200

        # Reads keep working; a reveal either works or is refused and takes nothing.
        views_left = {}
        revealed_while_full = 0
        for created, body in existing:
            status = _status(client, url, created)
            assert status.status_code == 200, status.text
            assert status.json()["views_left"] == 2
            answer = reveal(client, url, created["id"], ticket(client, url, created["id"]))
            if answer.status_code == 200:
                assert answer.content == body
                revealed_while_full += 1
                views_left[created["id"]] = 1
            else:
                assert _is_refusal(answer, (refusal,))
                assert _status(client, url, created).json()["views_left"] == 2
                views_left[created["id"]] = 2

        make_room()

        # No restart: the very next create is stored again.
        recovered = _create(client, url, views=1)
        assert recovered.status_code == 201, recovered.text
        created_after = [recovered.json()]
        large = _create(client, url, size=LARGE, kind="file")
        assert large.status_code == 201, large.text
        created_after.append(large.json())
        for created, body in existing:
            answer = reveal(client, url, created["id"], ticket(client, url, created["id"]))
            assert answer.status_code == 200
            assert answer.content == body
            views_left[created["id"]] -= 1
        for created in created_after + filled_with:
            views_left[created["id"]] = 1
    server.stop()

    database = server.data_dir / "atopos.db"
    with contextlib.closing(sqlite3.connect(database)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = dict(db.execute("SELECT id, views_left FROM secrets").fetchall())
    expected = {b64url_decode(sid): left for sid, left in views_left.items() if left}
    assert rows == expected

    # The next start sweeps what the failed large upload may have left behind.
    server.start()
    server.stop()
    with contextlib.closing(sqlite3.connect(database)) as db:
        orphans = db.execute(
            "SELECT count(*) FROM chunks WHERE owner NOT IN (SELECT id FROM secrets)"
        ).fetchone()[0]
    assert orphans == 0
    output = server.output()
    assert "Traceback" not in output
    assert '"status":500' not in output
    report_line(
        f"{len(refused)} creates refused with {refusal}, {revealed_while_full} of "
        f"{len(existing)} reveals served while full (the rest refused, nothing taken), "
        "recovered without restart, integrity_check ok"
    )


def test_full_filesystem_gives_507_and_recovers(
    tmp_path: Path, report_line: Callable[[str], None]
) -> None:
    mount_point = tmp_path / "small"
    with small_filesystem(mount_point, tmp_path) as kind:
        server = ServerProcess(data_dir=mount_point / "data", log_path=tmp_path / "server.log")
        server.start()
        fillers: list[Path] = []

        def make_full(_: httpx.Client) -> list[dict[str, str]]:
            fillers.extend(_fill(mount_point))
            assert os.statvfs(mount_point).f_bavail == 0
            return []

        def make_room() -> None:
            for path in fillers:
                path.unlink()

        try:
            _scenario(
                server, make_full, make_room, 507, lambda line: report_line(f"{kind}: {line}")
            )
        finally:
            server.stop()


def test_file_size_limit_gives_503_and_recovers(
    tmp_path: Path, report_line: Callable[[str], None]
) -> None:
    server = ServerProcess(
        data_dir=tmp_path / "data",
        log_path=tmp_path / "server.log",
        # The log shares the limit; warnings only keep it far below.
        env={"ATOPOS_LOG_LEVEL": "warning"},
        preexec=_limit_file_size,
    )
    server.start()

    def make_full(client: httpx.Client) -> list[dict[str, str]]:
        # Store secrets until the database or its WAL reaches the limit.
        stored = []
        for _ in range(FILE_SIZE_LIMIT // 1000):
            response = _create(client, server.url, views=1)
            if response.status_code != 201:
                assert _is_refusal(response, (503,))
                return stored
            stored.append(response.json())
        pytest.fail("the file size limit never stopped a create")

    def make_room() -> None:
        assert server.process is not None
        resource.prlimit(
            server.process.pid,
            resource.RLIMIT_FSIZE,
            (resource.RLIM_INFINITY, resource.RLIM_INFINITY),
        )

    started = time.monotonic()
    try:
        _scenario(
            server, make_full, make_room, 503, lambda line: report_line(f"RLIMIT_FSIZE: {line}")
        )
    finally:
        server.stop()
    assert time.monotonic() - started < 120
