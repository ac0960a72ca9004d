"""Request links and pickup links (docs/protocol/requests.md, "Links"): the only place their
text form is parsed and formatted.

A request link, ``{server}/q/{id}#{request key}.{device code}``, goes to the person who is
to fill in the secret: the fragment (which never reaches a server) carries the request key
and the requester's device code, so the filler's page seals to the device the requester
named, not to one the server could swap in. A pickup link, ``{server}/ask/{id}#{request
key}.{request token}``, stays with the requester: it is what waits for the secret and opens
it on the requester's device.
"""

from __future__ import annotations

import dataclasses

from atopos.client.links import InvalidLink, is_manage_token, is_secret_id, parse_server_url
from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.crypto.device import DevicePublic, InvalidDeviceCode, parse_device_code
from atopos.crypto.sizes import LINK_KEY_BYTES

__all__ = [
    "PickupLink",
    "RequestLink",
    "is_pickup_link",
    "parse_pickup_link",
    "parse_request_link",
]


@dataclasses.dataclass(frozen=True, slots=True)
class RequestLink:
    """What a request link carries: the server, the request, its key and the device."""

    server: str
    request_id: str
    request_key: bytes = dataclasses.field(repr=False)
    device: DevicePublic

    def __str__(self) -> str:
        key = b64url_encode(self.request_key)
        return f"{self.server}/q/{self.request_id}#{key}.{self.device.code}"


@dataclasses.dataclass(frozen=True, slots=True)
class PickupLink:
    """What a pickup link carries: the server, the request, its key and the request token."""

    server: str
    request_id: str
    request_key: bytes = dataclasses.field(repr=False)
    request_token: str = dataclasses.field(repr=False)

    def __str__(self) -> str:
        key = b64url_encode(self.request_key)
        return f"{self.server}/ask/{self.request_id}#{key}.{self.request_token}"


def is_pickup_link(text: str) -> bool:
    """True when `text` looks like a pickup link (its path ends in ``/ask/{one segment}``),
    valid or not; a share link of a server mounted under a path with ``/ask/`` is not."""
    _, marker, last = text.strip().partition("#")[0].rpartition("/ask/")
    return bool(marker) and "/" not in last


def parse_request_link(text: str) -> RequestLink:
    """Parse ``{server}/q/{id}#{key}.{device code}``; InvalidLink with a sentence."""
    server, request_id, key, rest = _parse(text, marker="q", what="request link")
    try:
        device = parse_device_code(rest)
    except InvalidDeviceCode:
        raise InvalidLink(
            "The device code in the request link is damaged; copy the whole link."
        ) from None
    return RequestLink(server, request_id, key, device)


def parse_pickup_link(text: str) -> PickupLink:
    """Parse ``{server}/ask/{id}#{key}.{token}``; InvalidLink with a sentence."""
    server, request_id, key, rest = _parse(text, marker="ask", what="pickup link")
    if not is_manage_token(rest):
        raise InvalidLink("The token in the pickup link is damaged; copy the whole link.")
    return PickupLink(server, request_id, key, rest)


def _parse(text: str, *, marker: str, what: str) -> tuple[str, str, bytes, str]:
    address, sep, fragment = text.strip().partition("#")
    prefix, slash, request_id = address.rpartition(f"/{marker}/")
    if not slash:
        raise InvalidLink(f"The {what} must have the form <server>/{marker}/<id>#<...>.")
    server = parse_server_url(prefix)
    if not is_secret_id(request_id):
        raise InvalidLink(f"The request id in the {what} is damaged; copy the whole link.")
    key_text, dot, rest = fragment.partition(".")
    if not sep or not dot:
        raise InvalidLink(f"The {what} is missing its part after '#'; copy the whole link.")
    try:
        key = b64url_decode(key_text)
    except ValueError:
        key = b""
    if len(key) != LINK_KEY_BYTES:
        raise InvalidLink(f"The key in the {what} is damaged; copy the whole link.")
    return server, request_id, key, rest
