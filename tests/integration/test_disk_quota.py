"""Disk fill is bounded: a client that uploads more than its hourly budget gets 429 with
Retry-After, a store at the operator's total gets 507, and in both cases the store stops
growing; bodies that are plainly not ciphertext (raw text or zeros after a valid header, a
length no envelope can have) are refused before they are stored (docs/operations.md)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import httpx

from atopos.crypto.envelope import Metadata, parse_header, seal
from atopos.server.config import ServerConfig, rate_limits
from tests.api_client import OCTETS, access_params
from tests.servers import ManualClock, in_process_server

KiB = 1024


def _envelope(size: int) -> bytes:
    return seal(os.urandom(size), Metadata("file", size), os.urandom(32), random_bytes=os.urandom)


def _used_pages(data_dir: Path) -> int:
    conn = sqlite3.connect(f"file:{data_dir / 'atopos.db'}?mode=ro", uri=True)
    try:
        pages: int = conn.execute("PRAGMA page_count").fetchone()[0]
        free: int = conn.execute("PRAGMA freelist_count").fetchone()[0]
    finally:
        conn.close()
    return pages - free


def _post(client: httpx.Client, url: str, body: bytes) -> httpx.Response:
    return client.post(
        f"{url}/api/v1/secrets",
        content=body,
        headers=OCTETS,
        params=access_params(body, kind="file"),
    )


def test_a_client_over_its_hourly_upload_budget_is_refused(tmp_path: Path) -> None:
    config = ServerConfig(
        data_dir=tmp_path / "data",
        pow_bits=0,
        upload_quota_per_hour_bytes=250 * KiB,
        **rate_limits(0),
    )
    with (
        in_process_server(config, ManualClock(1_800_000_000)) as url,
        httpx.Client(timeout=30) as greedy,
        httpx.Client(timeout=30, transport=httpx.HTTPTransport(local_address="127.0.0.2")) as other,
    ):
        body = _envelope(100 * KiB)
        assert [_post(greedy, url, body).status_code for _ in range(2)] == [201, 201]
        used = _used_pages(config.data_dir)
        for _ in range(5):
            refused = _post(greedy, url, body)
            assert refused.status_code == 429
            assert int(refused.headers["retry-after"]) > 0
            assert "quota" in refused.json()["message"]
        assert _used_pages(config.data_dir) == used
        # Another client has a budget of its own.
        assert _post(other, url, body).status_code == 201


def test_a_full_store_refuses_with_507_and_stops_growing(tmp_path: Path) -> None:
    clock = ManualClock(1_800_000_000)
    probe = ServerConfig(data_dir=tmp_path / "data", pow_bits=0, **rate_limits(0))
    with in_process_server(probe, clock) as url, httpx.Client(timeout=30) as client:
        assert _post(client, url, _envelope(10 * KiB)).status_code == 201
    empty_bytes = _used_pages(probe.data_dir) * 4096
    config = ServerConfig(
        data_dir=tmp_path / "data",
        pow_bits=0,
        storage_quota_bytes=empty_bytes + 600 * KiB,
        **rate_limits(0),
    )
    with in_process_server(config, clock) as url, httpx.Client(timeout=30) as client:
        statuses = []
        for _ in range(12):
            statuses.append(_post(client, url, _envelope(100 * KiB)).status_code)
            clock.advance(2)  # the store's size is asked again at most once a second
        assert 201 in statuses
        assert statuses[-1] == 507
        assert 507 in statuses
        assert statuses.index(507) <= 7
        full = _used_pages(config.data_dir)
        for _ in range(3):
            assert _post(client, url, _envelope(100 * KiB)).status_code == 507
            clock.advance(2)
        assert _used_pages(config.data_dir) == full


def test_bodies_that_are_not_ciphertext_are_refused(tmp_path: Path) -> None:
    config = ServerConfig(data_dir=tmp_path / "data", pow_bits=0, **rate_limits(0))
    real = _envelope(200 * KiB)
    header = parse_header(real)
    assert header is not None
    head = real[: len(header.raw)]
    fakes = {
        "zeros after a valid header": head + bytes(len(real) - len(head)),
        "text after a valid header": head + b"password=hunter2\n" * ((len(real) - len(head)) // 17),
        "a length no envelope has": real + os.urandom(7),
        "a truncated envelope": real[:-16],
    }
    with in_process_server(config, ManualClock(1_800_000_000)) as url, httpx.Client() as client:
        before = _used_pages(config.data_dir)
        for name, body in fakes.items():
            answer = _post(client, url, body)
            assert answer.status_code == 422, name
            assert answer.json()["message"] == "The body is not an Atopos envelope."
        assert _used_pages(config.data_dir) == before
        assert _post(client, url, real).status_code == 201
