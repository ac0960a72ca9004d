"""The SQLite store alone: what a create and a view cost the group-commit writer.

Runs N creates, then N views (`info` then `consume`, as the ticket step does), C at a time,
on a fresh SqliteSecretStore in a temporary directory (durable as shipped: WAL,
synchronous=FULL). Prints per operation: the writer thread's CPU time, the process's CPU
time, the SQL statements the writer ran (from its connection's trace callback) and the
commits (batches). No HTTP: the figures are the storage's own share of a request.

    .venv/bin/python bench/store_writer.py --count 3000 --concurrency 4
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import sqlite3
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from atopos.storage.port import NewSecret
from atopos.storage.sqlite import SqliteSecretStore

_ENVELOPE = bytes(568)


def _writer_cpu() -> float:
    for thread in threading.enumerate():
        if thread.name == "atopos-sqlite-writer" and thread.ident is not None:
            return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    raise RuntimeError("no writer thread")


async def _body() -> AsyncIterator[bytes]:
    yield _ENVELOPE


async def _run(count: int, concurrency: int) -> None:
    statements: list[str] = []
    with tempfile.TemporaryDirectory(prefix="atopos-store-bench-") as directory:
        store = SqliteSecretStore(Path(directory) / "atopos.db")
        # Bench-only: wrap the writer's connection factory to trace its statements.
        writer = store._writer
        connect = writer._connect

        def traced() -> sqlite3.Connection:
            conn = connect()
            conn.set_trace_callback(statements.append)
            return conn

        writer._connect = traced
        now = int(time.time())
        await store.start(now)
        ids = [hashlib.sha256(i.to_bytes(4, "big")).digest()[:16] for i in range(count)]
        gate = asyncio.Semaphore(concurrency)

        async def create(secret_id: bytes) -> None:
            async with gate:
                secret = NewSecret(
                    secret_id, bytes(32), "text", 1, now, now + 3600, access_key=bytes(32)
                )
                await store.create(secret, _body())

        async def view(secret_id: bytes) -> None:
            async with gate:
                assert await store.info(secret_id, now) is not None
                await store.consume(secret_id, secret_id[::-1], now + 60, now)

        phases: list[tuple[str, Callable[[bytes], Awaitable[None]]]] = [
            ("create", create),
            ("view", view),
        ]
        for name, operation in phases:
            statements.clear()
            writer_cpu, process_cpu, started = _writer_cpu(), time.process_time(), time.monotonic()
            await asyncio.gather(*(operation(secret_id) for secret_id in ids))
            elapsed = time.monotonic() - started
            writer_us = (_writer_cpu() - writer_cpu) / count * 1e6
            process_us = (time.process_time() - process_cpu) / count * 1e6
            kinds = collections.Counter(statement.split(" ")[0] for statement in statements)
            print(
                f"{name}: {count / elapsed:,.0f}/s, writer thread {writer_us:.1f} µs,"
                f" process {process_us:.1f} µs, statements {len(statements) / count:.2f}"
                f" ({', '.join(f'{k} {n / count:.2f}' for k, n in kinds.most_common())}) per op"
            )
        await store.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000, help="creates, then views")
    parser.add_argument("--concurrency", type=int, default=4, help="operations in flight")
    args = parser.parse_args()
    asyncio.run(_run(args.count, args.concurrency))


if __name__ == "__main__":
    main()
