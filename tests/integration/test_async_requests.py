"""The asyncio twin of the request flows (`client/secret_requests.py`, `AsyncSecretsApi`)
against a real server: open, fill with text or a file, wait, reveal on the device, and
cancel, with the same answers and errors as the sync flows the CLI uses."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from atopos.client.api import REQUEST_NOT_CANCELLED, AsyncSecretsApi
from atopos.client.secret_requests import (
    REQUEST_GONE,
    cancel_request_async,
    fill_request_async,
    open_request_async,
    wait_for_fill_async,
)
from atopos.client.secrets import reveal_secret_async
from atopos.crypto.device import DeviceKeys
from atopos.crypto.envelope import Metadata
from atopos.errors import Gone, Refused


def test_an_async_request_is_filled_waited_for_and_opened_on_the_device(api: str) -> None:
    device = DeviceKeys.from_seed(os.urandom(32))
    waits: list[str] = []

    async def scenario() -> None:
        async with AsyncSecretsApi(api) as requester, AsyncSecretsApi(api) as filler:
            opened = await open_request_async(requester, device.public, expires_in=600)
            assert opened.request_link.device.code == device.public.code

            async def fill_while_waiting(seconds: float) -> None:
                # The first poll saw it open; the filler sends while the requester waits.
                waits.append("slept")
                if waits.count("slept") == 1:
                    await fill_request_async(filler, opened.request_link, b"async words")

            share = await wait_for_fill_async(
                requester,
                opened.pickup_link,
                sleep=fill_while_waiting,
                on_waiting=lambda: waits.append("waiting"),
            )
            received: list[bytes] = []
            metadata = await reveal_secret_async(
                requester, share, received.append, device=lambda: device
            )
            assert (b"".join(received), metadata.kind) == (b"async words", "text")
            # Filled once: a second fill is told the request is closed.
            with pytest.raises(Gone, match="already filled"):
                await fill_request_async(filler, opened.request_link, b"again")

    asyncio.run(scenario())
    assert waits == ["waiting", "slept"]


def test_an_async_fill_sends_a_file(api: str, tmp_path: Path) -> None:
    device = DeviceKeys.from_seed(os.urandom(32))
    source = tmp_path / "scan.pdf"
    source.write_bytes(os.urandom(700_000))  # several sealed pieces

    async def scenario() -> Metadata:
        async with AsyncSecretsApi(api) as client:
            opened = await open_request_async(client, device.public, expires_in=600)
            await fill_request_async(client, opened.request_link, source)
            share = await wait_for_fill_async(client, opened.pickup_link)
            received: list[bytes] = []
            metadata = await reveal_secret_async(
                client, share, received.append, device=lambda: device
            )
            assert b"".join(received) == source.read_bytes()
            return metadata

    metadata = asyncio.run(scenario())
    assert (metadata.kind, metadata.name, metadata.media_type) == (
        "file",
        "scan.pdf",
        "application/pdf",
    )


def test_async_cancel(api: str) -> None:
    device = DeviceKeys.from_seed(os.urandom(32))

    async def scenario() -> None:
        async with AsyncSecretsApi(api) as client:
            opened = await open_request_async(client, device.public, expires_in=600)
            await cancel_request_async(client, opened.pickup_link)
            for closed in (
                fill_request_async(client, opened.request_link, b"too late"),
                cancel_request_async(client, opened.pickup_link),
                wait_for_fill_async(client, opened.pickup_link),
            ):
                with pytest.raises(Gone) as gone:
                    await closed
                assert gone.value.message == REQUEST_GONE
            # A filled request is not cancelled: Refused, saying how to delete the secret.
            filled = await open_request_async(client, device.public, expires_in=600)
            await fill_request_async(client, filled.request_link, b"in time")
            with pytest.raises(Refused) as refused:
                await cancel_request_async(client, filled.pickup_link)
            assert refused.value.message == REQUEST_NOT_CANCELLED
            assert (
                await client.request_status(
                    filled.request_link.request_id, filled.pickup_link.request_token
                )
            ).state == "filled"

    asyncio.run(scenario())
