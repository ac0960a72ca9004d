"""An SQLite store shared by several processes (`atopos serve --workers N`): the lock its
writers take turns on is a file of its own, so a writer closing it leaves SQLite's POSIX locks
on the database alone (closing any descriptor of a file drops all of a process's POSIX locks
on it, and a reader in WAL mode holds one that keeps another process from deleting the WAL
under it), and a holder killed with SIGKILL frees it."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from atopos.storage.sqlite import SqliteSecretStore
from tests.integration.store_scenarios import NOW, body, secret


def test_a_writer_closing_leaves_a_reader_s_wal_in_place(tmp_path: Path) -> None:
    path = tmp_path / "atopos.db"
    new = secret()

    async def create_then_close() -> None:
        store = SqliteSecretStore(path, is_shared_by_processes=True)
        await store.start(NOW)
        await store.create(new, body(b"ciphertext"))
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM secrets").fetchone() == (1,)
        await store.aclose()  # the writer closes its lock, mid-read of `reader`

    reader = sqlite3.connect(path, isolation_level=None)
    asyncio.run(create_then_close())
    # Another process (a worker that stops) closes its last connection: it deletes the WAL
    # only if it can lock the database exclusively, which the open read must prevent.
    other = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
        " c.execute('SELECT count(*) FROM secrets').fetchall(); c.close()"
    )
    subprocess.run([sys.executable, "-c", other, str(path)], check=True, timeout=30)
    assert Path(f"{path}-wal").exists()
    assert reader.execute("SELECT count(*) FROM secrets").fetchone() == (1,)
    reader.execute("COMMIT")
    reader.close()


def test_the_writers_lock_is_freed_when_its_holder_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "atopos.db"

    async def create_one() -> None:
        store = SqliteSecretStore(path, is_shared_by_processes=True)
        await store.start(NOW)
        await store.create(secret(), body(b"ciphertext"))
        await store.aclose()

    asyncio.run(create_one())
    lock = Path(f"{path}-writers.lock")
    assert lock.stat().st_size == 0
    assert lock.stat().st_mode & 0o777 == 0o600
    holder = subprocess.Popen(  # takes the lock and sleeps with it
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR);"
            " fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    fd = os.open(lock, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            raise AssertionError("the lock was free while another process held it")
        except BlockingIOError:
            pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        fcntl.flock(fd, fcntl.LOCK_EX)  # returns: the kernel freed the dead holder's lock
        fcntl.flock(fd, fcntl.LOCK_UN)

        async def create_after() -> int:
            store = SqliteSecretStore(path, is_shared_by_processes=True)
            await store.start(NOW)
            created = await store.create(secret(), body(b"more"))
            await store.aclose()
            return created

        assert asyncio.run(create_after()) >= 0
    finally:
        os.close(fd)
        holder.stdout.close()
    assert sqlite3.connect(path).execute("SELECT count(*) FROM secrets").fetchone() == (2,)
