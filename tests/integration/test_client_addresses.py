"""Who a client is, behind a trusted proxy and on IPv6: the right-most untrusted entry across
every X-Forwarded-For line (a client cannot pick its identity by adding a line), and IPv6
clients counted by their /56 and /48 as well as their /64 (hopping /64s does not reset a
budget)."""

from __future__ import annotations

from pathlib import Path

import httpx

from atopos.server.config import ServerConfig, rate_limits
from tests.api_client import OCTETS, access_params, envelope
from tests.servers import ManualClock, in_process_server


def _config(tmp_path: Path, per_minute: int) -> ServerConfig:
    return ServerConfig(
        data_dir=tmp_path / "data",
        pow_bits=0,
        trusted_proxies=("127.0.0.1",),
        **rate_limits(per_minute),
    )


def _create(client: httpx.Client, url: str, forwarded: list[str]) -> int:
    headers = [(b"content-type", OCTETS["content-type"].encode())]
    headers += [(b"x-forwarded-for", line.encode()) for line in forwarded]
    body = envelope(b"x")[0]
    return client.post(
        f"{url}/api/v1/secrets", params=access_params(body), content=body, headers=headers
    ).status_code


def test_a_forged_forwarded_line_does_not_change_who_the_client_is(tmp_path: Path) -> None:
    with (
        in_process_server(_config(tmp_path, 3), ManualClock(1_800_000_000)) as url,
        httpx.Client(timeout=30) as client,
    ):
        # The client forges a first line of its own each time; the proxy (127.0.0.1)
        # appended the real address to the last line.
        statuses = [_create(client, url, [f"198.51.100.{n}", "203.0.113.5"]) for n in range(4)]
        assert statuses == [201, 201, 201, 429]
        # A chain of trusted proxies is skipped from the right.
        assert _create(client, url, ["203.0.113.5, 127.0.0.1"]) == 429
        assert _create(client, url, ["203.0.113.6", "127.0.0.1"]) == 201


def test_hopping_ipv6_64s_inside_one_56_runs_out_of_the_56s_budget(tmp_path: Path) -> None:
    with (
        in_process_server(_config(tmp_path, 2), ManualClock(1_800_000_000)) as url,
        httpx.Client(timeout=30) as client,
    ):
        # Two a minute per /64, 8 per /56: a new /64 of the same /56 each time.
        statuses = [_create(client, url, [f"2001:db8:0:{n:x}::1"]) for n in range(9)]
        assert statuses == [201] * 8 + [429]
        # Another /56 of the same /48 still has its own /56 budget (and the /48's 32).
        assert _create(client, url, ["2001:db8:0:100::1"]) == 201
        # The same /64 twice more is over its own budget of 2.
        assert _create(client, url, ["2001:db8:0:100::2"]) == 201
        assert _create(client, url, ["2001:db8:0:100::3"]) == 429
