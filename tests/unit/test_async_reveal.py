"""The asyncio driver of the access path waits out a 429 and walks again, as the sync one."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from atopos.client.api import AsyncSecretsApi
from atopos.client.links import ShareLink
from atopos.client.secrets import reveal_secret_async
from atopos.crypto.base64url import b64url_encode
from atopos.errors import Gone

SECRET_ID = b64url_encode(bytes(range(16)))


def test_a_429_is_waited_out_and_the_walk_starts_again() -> None:
    paths: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path.rsplit("/", 1)[1])
        if len(paths) < 3:
            return httpx.Response(429, headers={"Retry-After": "0"}, json={"error": "x"})
        return httpx.Response(404, json={"error": "not_found", "message": "Gone."})

    async def scenario() -> None:
        api = AsyncSecretsApi("http://fake.test", http_transport=httpx.MockTransport(handle))
        async with api:
            link = ShareLink(api.server, SECRET_ID, bytes(32))
            with pytest.raises(Gone):
                await reveal_secret_async(api, link, lambda content: None, stamp=False)

    asyncio.run(scenario())
    assert paths == ["challenge", "challenge", "challenge"]
