"""Every reader reveals in two requests by default (the one-shot ticket step,
docs/protocol/access.md "One shot"), and still reveals through a server without it: one that
refuses `reveal` with 422 (a server from before it) and one that ignores it and answers with
a ticket. The older servers are a real in-process server behind a test-only ASGI wrapper
(tests/older_servers.py); storage, network and crypto are real."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from atopos.client.api import AsyncSecretsApi, SecretsApi
from atopos.client.secrets import create_secret, reveal_secret, reveal_secret_async
from atopos.errors import Gone, WrongKey
from atopos.server.config import ServerConfig, rate_limits
from tests.older_servers import IgnoringOlderServer, RecordingServer, RefusingOlderServer
from tests.servers import ATOPOS, ManualClock, in_process_server

# What each server sees of one reveal, after the create.
STEPS = {
    "current": ["challenge", "ticket"],
    "refusing": ["challenge", "ticket", "ticket", "reveal"],
    "ignoring": ["challenge", "ticket", "reveal"],
}
_KINDS = {
    "current": RecordingServer,
    "refusing": RefusingOlderServer,
    "ignoring": IgnoringOlderServer,
}


@pytest.fixture(params=list(STEPS))
def older(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, RecordingServer]]:
    """(url, wrapper) of a real server answering the one-shot step as `request.param` does."""
    wrapper = _KINDS[request.param]()
    config = ServerConfig(data_dir=tmp_path / "data", pow_bits=4, **rate_limits(0))
    with in_process_server(config, ManualClock(1_800_000_000), wrap=wrapper.around) as url:
        yield url, wrapper


def _kind(wrapper: RecordingServer) -> str:
    return next(name for name, kind in _KINDS.items() if type(wrapper) is kind)


def atopos(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [ATOPOS, *args], input=stdin, capture_output=True, timeout=120, check=False
    )


def test_the_cli_reveals_through_every_server(older: tuple[str, RecordingServer]) -> None:
    url, wrapper = older
    created = atopos("secret", "create", "--server", url, "--views", "1", stdin=b"PLAIN")
    assert created.returncode == 0, created.stderr
    link = created.stdout.decode().strip()
    revealed = atopos("secret", "reveal", "--no-stamp", link)
    assert (revealed.returncode, revealed.stdout) == (0, b"PLAIN"), revealed.stderr
    assert wrapper.steps == STEPS[_kind(wrapper)]
    # The one view is spent: a second reader finds nothing.
    assert atopos("secret", "reveal", link).returncode == 3


def test_the_sdk_reveals_a_passphrase_secret_after_a_wrong_one_through_every_server(
    older: tuple[str, RecordingServer],
) -> None:
    url, wrapper = older
    with SecretsApi(url) as api:
        made = create_secret(api, b"keyed", expires_in=600, passphrase="right horse")
        with pytest.raises(WrongKey):
            reveal_secret(
                api, made.share_link, bytearray().extend, passphrase="wrong horse", stamp=False
            )
        # Refused at the ticket step: nothing spent, the one view is still there.
        wrapper.steps.clear()
        out = bytearray()
        reveal_secret(api, made.share_link, out.extend, passphrase="right horse", stamp=False)
        assert bytes(out) == b"keyed"
        assert wrapper.steps == STEPS[_kind(wrapper)]
        with pytest.raises(Gone):
            reveal_secret(api, made.share_link, out.extend, passphrase="right horse")


def test_the_async_sdk_reveals_through_every_server(older: tuple[str, RecordingServer]) -> None:
    url, wrapper = older

    async def scenario() -> bytes:
        async with AsyncSecretsApi(url) as api:
            with SecretsApi(url) as sync_api:
                made = create_secret(sync_api, b"async", expires_in=600)
            wrapper.steps.clear()
            out = bytearray()
            await reveal_secret_async(api, made.share_link, out.extend, stamp=False)
            return bytes(out)

    assert asyncio.run(scenario()) == b"async"
    assert wrapper.steps == STEPS[_kind(wrapper)]


def test_a_streamed_file_reveals_through_every_server(
    older: tuple[str, RecordingServer], tmp_path: Path
) -> None:
    # Over 1 MiB the server streams the envelope (server/secrets/streaming.py) from either
    # step; the one-shot answer has no size limit of its own.
    url, wrapper = older
    content = os.urandom(3 * 1024 * 1024 + 17)
    source = tmp_path / "big.bin"
    source.write_bytes(content)
    with SecretsApi(url) as api:
        made = create_secret(api, source, expires_in=600)
        wrapper.steps.clear()
        out = bytearray()
        seen: list[tuple[int, int | None]] = []
        metadata = reveal_secret(
            api,
            made.share_link,
            out.extend,
            progress=lambda done, total: seen.append((done, total)),
            stamp=False,
        )
    assert bytes(out) == content
    assert metadata.kind == "file"
    assert wrapper.steps == STEPS[_kind(wrapper)]
    # The answer's Content-Length counted envelope bytes: progress ends at the total.
    assert seen[-1][0] == seen[-1][1]
