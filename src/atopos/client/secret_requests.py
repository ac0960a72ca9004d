"""Secret requests end to end (docs/protocol/requests.md): the reverse flow.

The requester opens a request bound to this machine's device (`open_request`) and hands the
request link to someone; that person fills it (in the browser, or `fill_request` here) with
content sealed to the requester's device; the requester waits for it (`wait_for_fill`) and
reveals it like any device-bound secret, with the request key as the link key.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator

from atopos.client.api import SecretsApi
from atopos.client.links import ShareLink
from atopos.client.request_links import PickupLink, RequestLink
from atopos.crypto.access_proof import AccessSigner
from atopos.crypto.device import DevicePublic
from atopos.crypto.envelope import Metadata, Sealer
from atopos.crypto.randomness import draw
from atopos.crypto.request_keys import fill_token_of
from atopos.crypto.sizes import LINK_KEY_BYTES
from atopos.errors import Gone, InvalidInput
from atopos.randomness import RandomBytes, system_random_bytes

__all__ = [
    "POLL_SECONDS",
    "REQUEST_GONE",
    "OpenedRequest",
    "fill_request",
    "open_request",
    "share_link_of",
    "wait_for_fill",
]

REQUEST_GONE = "This request does not exist: it expired or was already filled."
# How often a waiting requester asks (the `manage` rate limit allows far more).
POLL_SECONDS = 1.0
_PIECE_BYTES = 256 * 1024


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
    return OpenedRequest(
        request_link=RequestLink(api.server, created.request_id, request_key, device),
        pickup_link=PickupLink(api.server, created.request_id, request_key, created.request_token),
        expires_at=created.expires_at,
    )


def fill_request(
    api: SecretsApi,
    link: RequestLink,
    content: bytes,
    *,
    random_bytes: RandomBytes = system_random_bytes,
) -> int:
    """Seal `content` (text) to the link's device with the request key and fill the
    request; returns when the secret will expire. Gone when the request is not open."""
    if not content:
        raise InvalidInput("The secret is empty.")
    sealer = Sealer(
        link.request_key,
        Metadata(kind="text", size=len(content)),
        random_bytes=random_bytes,
        device=link.device,
    )

    def envelope() -> Iterator[bytes]:
        for start in range(0, len(content), _PIECE_BYTES):
            if piece := sealer.update(content[start : start + _PIECE_BYTES]):
                yield piece
        yield from sealer.finalize_iter()

    try:
        return api.fill_request(
            link.request_id, fill_token_of(link.request_key), envelope(), sealer.size, "text"
        )
    except Gone:
        raise Gone(REQUEST_GONE) from None


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
    the request expires first."""
    is_first = True
    while True:
        try:
            status = api.request_status(link.request_id, link.request_token)
        except Gone:
            raise Gone(REQUEST_GONE) from None
        if status.state == "filled" and status.secret_id is not None:
            return share_link_of(link, status.secret_id)
        if is_first and on_waiting is not None:
            on_waiting()
        is_first = False
        sleep(poll_seconds)


def share_link_of(link: PickupLink, secret_id: str) -> ShareLink:
    """The share link of the secret that filled the request."""
    return ShareLink(link.server, secret_id, link.request_key)
