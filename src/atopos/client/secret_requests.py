"""Secret requests end to end (docs/protocol/requests.md): the reverse flow.

The requester opens a request bound to this machine's device (`open_request`) and hands the
request link to someone; that person fills it (in the browser, or `fill_request` here) with
content, text or a file, sealed to the requester's device; the requester waits for it
(`wait_for_fill`) and reveals it like any device-bound secret, with the request key as the
link key, or cancels it while no fill holds it (`cancel_request`). Each flow has an asyncio
twin on `AsyncSecretsApi` (`…_async`) with the same steps and the same errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

from atopos.client.api import AsyncSecretsApi, CreatedRequest, Kind, SecretsApi
from atopos.client.links import ShareLink
from atopos.client.local_files import local_content
from atopos.client.request_links import PickupLink, RequestLink
from atopos.crypto.access_proof import AccessSigner
from atopos.crypto.device import DevicePublic
from atopos.crypto.envelope import Sealer
from atopos.crypto.randomness import draw
from atopos.crypto.request_keys import fill_token_of
from atopos.crypto.sizes import LINK_KEY_BYTES
from atopos.errors import Gone, InvalidInput
from atopos.randomness import RandomBytes, system_random_bytes

__all__ = [
    "POLL_SECONDS",
    "REQUEST_GONE",
    "OpenedRequest",
    "cancel_request",
    "cancel_request_async",
    "fill_request",
    "fill_request_async",
    "open_request",
    "open_request_async",
    "share_link_of",
    "wait_for_fill",
    "wait_for_fill_async",
]

REQUEST_GONE = "This request does not exist: it expired, was cancelled or was already filled."
# How often a waiting requester asks (the `manage` rate limit allows far more).
POLL_SECONDS = 1.0


@dataclasses.dataclass(frozen=True, slots=True)
class OpenedRequest:
    """The link to hand out (`request_link`) and the one to keep (`pickup_link`)."""

    request_link: RequestLink
    pickup_link: PickupLink
    expires_at: int


def open_request(
    api: SecretsApi,
    device: DevicePublic,
    *,
    expires_in: int,
    random_bytes: RandomBytes = system_random_bytes,
) -> OpenedRequest:
    """Open a request whose secret only `device` (this machine's) will take and open."""
    request_key = draw(random_bytes, LINK_KEY_BYTES)
    created = api.create_request(
        device_key=device.signing_key,
        access_key=AccessSigner(request_key).public_key,
        fill_token=fill_token_of(request_key),
        expires_in=expires_in,
    )
    return _opened(api.server, created, request_key, device)


async def open_request_async(
    api: AsyncSecretsApi,
    device: DevicePublic,
    *,
    expires_in: int,
    random_bytes: RandomBytes = system_random_bytes,
) -> OpenedRequest:
    """`open_request` for asyncio."""
    request_key = draw(random_bytes, LINK_KEY_BYTES)
    created = await api.create_request(
        device_key=device.signing_key,
        access_key=AccessSigner(request_key).public_key,
        fill_token=fill_token_of(request_key),
        expires_in=expires_in,
    )
    return _opened(api.server, created, request_key, device)


def fill_request(
    api: SecretsApi,
    link: RequestLink,
    content: bytes | Path,
    *,
    random_bytes: RandomBytes = system_random_bytes,
) -> int:
    """Seal `content` (bytes: text; a Path: a file, streamed) to the link's device with the
    request key and fill the request; returns when the secret will expire. Gone when the
    request is not open."""
    with _fill_envelope(link, content, random_bytes) as fill, _request_gone():
        return api.fill_request(
            link.request_id, fill_token_of(link.request_key), fill.pieces, fill.size, fill.kind
        )


async def fill_request_async(
    api: AsyncSecretsApi,
    link: RequestLink,
    content: bytes | Path,
    *,
    random_bytes: RandomBytes = system_random_bytes,
) -> int:
    """`fill_request` for asyncio: the file is read and sealed in a worker thread, piece by
    piece, so the event loop stays free."""
    with _fill_envelope(link, content, random_bytes) as fill, _request_gone():
        return await api.fill_request(
            link.request_id,
            fill_token_of(link.request_key),
            _in_worker_thread(fill.pieces),
            fill.size,
            fill.kind,
        )


def wait_for_fill(
    api: SecretsApi,
    link: PickupLink,
    *,
    sleep: Callable[[float], object] = time.sleep,
    poll_seconds: float = POLL_SECONDS,
    on_waiting: Callable[[], object] | None = None,
) -> ShareLink:
    """Ask until the request is filled and return the filled secret's share link (its key
    is the request key: the secret still opens only on the requester's device). Gone when
    the request expires (or is cancelled) first."""
    is_first = True
    while True:
        with _request_gone():
            status = api.request_status(link.request_id, link.request_token)
        if status.state == "filled" and status.secret_id is not None:
            return share_link_of(link, status.secret_id)
        if is_first and on_waiting is not None:
            on_waiting()
        is_first = False
        sleep(poll_seconds)


async def wait_for_fill_async(
    api: AsyncSecretsApi,
    link: PickupLink,
    *,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    poll_seconds: float = POLL_SECONDS,
    on_waiting: Callable[[], object] | None = None,
) -> ShareLink:
    """`wait_for_fill` for asyncio."""
    is_first = True
    while True:
        with _request_gone():
            status = await api.request_status(link.request_id, link.request_token)
        if status.state == "filled" and status.secret_id is not None:
            return share_link_of(link, status.secret_id)
        if is_first and on_waiting is not None:
            on_waiting()
        is_first = False
        await sleep(poll_seconds)


def cancel_request(api: SecretsApi, link: PickupLink) -> None:
    """Close the pickup link's request unfilled. Refused when a fill holds or filled it
    (a filled secret is deleted like any secret); Gone when it no longer exists."""
    with _request_gone():
        api.cancel_request(link.request_id, link.request_token)


async def cancel_request_async(api: AsyncSecretsApi, link: PickupLink) -> None:
    """`cancel_request` for asyncio."""
    with _request_gone():
        await api.cancel_request(link.request_id, link.request_token)


def share_link_of(link: PickupLink, secret_id: str) -> ShareLink:
    """The share link of the secret that filled the request."""
    return ShareLink(link.server, secret_id, link.request_key)


# -- shared by both twins -----------------------------------------------------------------


def _opened(
    server: str, created: CreatedRequest, request_key: bytes, device: DevicePublic
) -> OpenedRequest:
    return OpenedRequest(
        request_link=RequestLink(server, created.request_id, request_key, device),
        pickup_link=PickupLink(server, created.request_id, request_key, created.request_token),
        expires_at=created.expires_at,
    )


@contextlib.contextmanager
def _request_gone() -> Iterator[None]:
    # One sentence for a request that is not there, whatever the route said.
    try:
        yield
    except Gone:
        raise Gone(REQUEST_GONE) from None


@dataclasses.dataclass(frozen=True, slots=True)
class _FillEnvelope:
    pieces: Iterator[bytes]
    size: int
    kind: Kind


@contextlib.contextmanager
def _fill_envelope(
    link: RequestLink, content: bytes | Path, random_bytes: RandomBytes
) -> Iterator[_FillEnvelope]:
    """The envelope that fills `link`: `content` sealed to its device, as pieces, with its
    size and kind; a file stays open (and is read as it is sent) while the block runs."""
    with contextlib.ExitStack() as stack:
        if not isinstance(content, Path) and not content:
            raise InvalidInput("The secret is empty.")
        metadata, plain = local_content(content, stack)
        sealer = Sealer(link.request_key, metadata, random_bytes=random_bytes, device=link.device)
        yield _FillEnvelope(_sealed(sealer, plain), sealer.size, metadata.kind)


def _sealed(sealer: Sealer, plain: Iterator[bytes]) -> Iterator[bytes]:
    for piece in plain:
        if sealed := sealer.update(piece):
            yield sealed
    yield from sealer.finalize_iter()


async def _in_worker_thread(pieces: Iterator[bytes]) -> AsyncIterator[bytes]:
    while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
        yield piece
