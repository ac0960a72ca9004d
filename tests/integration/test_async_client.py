"""The asyncio SDK (`AsyncSecretsApi`, `reveal_secret_async`) against a real server: the
same machine and the same answers as the sync client the CLI uses."""

from __future__ import annotations

import asyncio

import pytest

from atopos.client.api import AsyncSecretsApi, SecretsApi
from atopos.client.links import ShareLink
from atopos.client.secrets import create_secret, reveal_secret_async
from atopos.client.transport import Transport
from atopos.crypto.errors import PassphraseRequired
from atopos.errors import Gone
from tests.servers import ServerProcess


def _created(
    url: str, content: bytes, *, views: int = 1, passphrase: str | None = None
) -> tuple[ShareLink, str, str]:
    with SecretsApi(url) as api:
        created = create_secret(api, content, expires_in=600, views=views, passphrase=passphrase)
    manage = created.manage_link
    return created.share_link, manage.secret_id, manage.manage_token


def test_an_async_reveal_spends_the_view_and_a_second_finds_it_gone(
    server: ServerProcess,
) -> None:
    link, _, _ = _created(server.url, b"from asyncio")

    async def scenario() -> None:
        received: list[bytes] = []
        async with AsyncSecretsApi(Transport(server.url)) as api:
            metadata = await reveal_secret_async(api, link, received.append)
            assert (b"".join(received), metadata.kind) == (b"from asyncio", "text")
            with pytest.raises(Gone):
                await reveal_secret_async(api, link, received.append)

    asyncio.run(scenario())


def test_async_status_and_delete(server: ServerProcess) -> None:
    _, secret_id, token = _created(server.url, b"x", views=2)

    async def scenario() -> None:
        async with AsyncSecretsApi(server.url) as api:
            status = await api.status(secret_id, token)
            assert (status.views_left, status.kind) == (2, "text")
            await api.delete(secret_id, token)
            with pytest.raises(Gone):
                await api.status(secret_id, token)

    asyncio.run(scenario())


def test_an_async_reveal_without_the_passphrase_spends_no_view(server: ServerProcess) -> None:
    link, secret_id, token = _created(server.url, b"locked", passphrase="correct horse")

    async def scenario() -> None:
        async with AsyncSecretsApi(server.url) as api:
            with pytest.raises(PassphraseRequired):
                await reveal_secret_async(api, link, lambda content: None)
            assert (await api.status(secret_id, token)).views_left == 1
            received: list[bytes] = []
            await reveal_secret_async(api, link, received.append, passphrase="correct horse")
            assert b"".join(received) == b"locked"

    asyncio.run(scenario())
