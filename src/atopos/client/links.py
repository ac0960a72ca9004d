"""Share and manage links: the only place their text form is parsed and formatted.

A share link is ``{server}/s/{id}#{link key}`` and a manage link ``{server}/m/{id}#{token}``.
A split link (docs/protocol/links.md) is a share link whose fragment is one key share.
The fragment never reaches a server, so the key rides in it. Parsing is strict: a link that
was mangled in transit (cut short, wrapped, re-encoded) is rejected with a sentence saying
what is wrong rather than half-working against the wrong secret or server.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from urllib.parse import SplitResult, urlsplit

from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.crypto.shamir import KEY_SHARE_BYTES, InvalidShares, KeyShare
from atopos.crypto.sizes import (
    LINK_KEY_BYTES,
    MANAGE_TOKEN_BYTES,
    SECRET_ID_BYTES,
    SECRET_ID_CHARS,
)
from atopos.errors import InvalidInput

__all__ = [
    "MANAGE_TOKEN_BYTES",
    "SECRET_ID_BYTES",
    "InvalidLink",
    "KeyShareLink",
    "ManageLink",
    "ShareLink",
    "is_manage_token",
    "is_secret_id",
    "parse_manage_link",
    "parse_reveal_link",
    "parse_server_url",
    "parse_share_link",
]

_SCHEMES = frozenset({"http", "https"})
# DNS limits (RFC 1035 2.3.4): the resolver refuses longer names with a UnicodeError.
_MAX_LABEL_CHARS = 63
_MAX_HOST_CHARS = 253


class InvalidLink(InvalidInput):
    """A share link, manage link or server URL that does not have the exact expected form."""


@dataclasses.dataclass(frozen=True, slots=True)
class ShareLink:
    """What a share link carries: where the secret is, which one, and the key to open it."""

    server: str
    secret_id: str
    link_key: bytes = dataclasses.field(repr=False)

    def __str__(self) -> str:
        return f"{self.server}/s/{self.secret_id}#{b64url_encode(self.link_key)}"


@dataclasses.dataclass(frozen=True, slots=True)
class ManageLink:
    """What a manage link carries: the secret's server and id, and its manage token."""

    server: str
    secret_id: str
    manage_token: str = dataclasses.field(repr=False)

    def __str__(self) -> str:
        return f"{self.server}/m/{self.secret_id}#{self.manage_token}"


@dataclasses.dataclass(frozen=True, slots=True)
class KeyShareLink:
    """A split link: where the secret is, which one, and one share of its link key."""

    server: str
    secret_id: str
    share: KeyShare = dataclasses.field(repr=False)

    def __str__(self) -> str:
        return f"{self.server}/s/{self.secret_id}#{b64url_encode(self.share.to_bytes())}"


def is_secret_id(text: str) -> bool:
    """True for the canonical text form of a 16-byte secret id (22 base64url characters)."""
    return len(text) == SECRET_ID_CHARS and _decodes_to(text, SECRET_ID_BYTES)


def is_manage_token(text: str) -> bool:
    """True for the canonical text form of a 32-byte manage token."""
    return _decodes_to(text, MANAGE_TOKEN_BYTES)


def parse_server_url(text: str) -> str:
    """Normalize a server URL (`--server`, `$ATOPOS_SERVER`) to ``scheme://host[:port][/prefix]``."""
    parts = _split(text.strip(), what="server URL")
    if parts.query or parts.fragment or "#" in text:
        raise InvalidLink("The server URL must not have a query or fragment.")
    return _server_of(parts, parts.path.rstrip("/"))


def parse_share_link(text: str) -> ShareLink:
    """Parse ``{server}/s/{id}#{key}``; raises InvalidLink with a sentence for the user."""
    server, secret_id, fragment = _parse(text, marker="s", what="share link")
    if not fragment:
        raise InvalidLink("The share link has no key after '#'; copy the whole link.")
    if _decodes_to(fragment, KEY_SHARE_BYTES):
        raise InvalidLink("This link is one share of a split secret; give it with the others.")
    if not _decodes_to(fragment, LINK_KEY_BYTES):
        raise InvalidLink("The key after '#' in the share link is damaged; copy the whole link.")
    return ShareLink(server, secret_id, b64url_decode(fragment))


def parse_reveal_link(text: str) -> ShareLink | KeyShareLink:
    """Parse a share link or a split link (its fragment one key share of 44 bytes)."""
    if not _decodes_to(text.strip().partition("#")[2], KEY_SHARE_BYTES):
        return parse_share_link(text)
    server, secret_id, fragment = _parse(text, marker="s", what="share link")
    try:
        share = KeyShare.from_bytes(b64url_decode(fragment))
    except InvalidShares as error:
        raise InvalidLink(f"The key share after '#' is damaged: {error}") from None
    return KeyShareLink(server, secret_id, share)


def parse_manage_link(text: str) -> ManageLink:
    """Parse ``{server}/m/{id}#{token}``; raises InvalidLink with a sentence for the user."""
    server, secret_id, fragment = _parse(text, marker="m", what="manage link")
    if not fragment:
        raise InvalidLink("The manage link has no token after '#'; copy the whole link.")
    if not is_manage_token(fragment):
        raise InvalidLink("The token after '#' in the manage link is damaged; copy the whole link.")
    return ManageLink(server, secret_id, fragment)


def _parse(text: str, *, marker: str, what: str) -> tuple[str, str, str]:
    parts = _split(text.strip(), what=what)
    if parts.query:
        raise InvalidLink(f"The {what} must not have a query ('?...').")
    prefix, sep, secret_id = parts.path.rpartition(f"/{marker}/")
    if not sep:
        other_marker, other = ("m", "manage link") if marker == "s" else ("s", "share link")
        if f"/{other_marker}/" in parts.path:
            raise InvalidLink(f"This is a {other}, not a {what}.")
        raise InvalidLink(f"The {what} must have the form <server>/{marker}/<id>#<...>.")
    if not is_secret_id(secret_id):
        raise InvalidLink(f"The secret id in the {what} is damaged; copy the whole link.")
    return _server_of(parts, prefix), secret_id, parts.fragment


def _split(text: str, *, what: str) -> SplitResult:
    if not text.isascii() or any(ch.isspace() or not ch.isprintable() for ch in text):
        raise InvalidLink(f"The {what} contains spaces or unexpected characters.")
    try:
        parts = urlsplit(text)
        port = parts.port  # urlsplit checks the port only when asked
    except ValueError:
        raise InvalidLink(f"The {what} is not a valid URL.") from None
    if parts.scheme.lower() not in _SCHEMES:
        raise InvalidLink(f"The {what} must start with http:// or https://.")
    if not parts.hostname or port == 0:
        raise InvalidLink(f"The {what} has no server host.")
    if parts.username is not None or parts.password is not None:
        raise InvalidLink(f"The {what} must not contain a user name or password.")
    if not _is_usable_host(parts.hostname, text):
        raise InvalidLink(f"The server host in the {what} is not a valid host name or address.")
    return parts


def _is_usable_host(host: str, url: str) -> bool:
    """True when the HTTP client and the resolver will take `host` (a name or an address).

    urlsplit lets through hosts that httpx refuses (``256.1.1.1``, a bad ``xn--`` label) or
    that the resolver refuses (an empty or 64-character label); each would otherwise fail
    with an exception of theirs instead of a sentence of ours.
    """
    try:
        ipaddress.ip_address(host)
    except ValueError:
        name = host[:-1] if host.endswith(".") else host
        labels = name.split(".")
        if len(name) > _MAX_HOST_CHARS or any(
            not 0 < len(label) <= _MAX_LABEL_CHARS for label in labels
        ):
            return False
    import httpx  # here: links are parsed by commands that never talk to a server as well

    try:
        httpx.URL(url).host  # noqa: B018 -- the property decodes an "xn--" host, and may fail
    except (httpx.InvalidURL, ValueError):  # idna's errors are ValueErrors
        return False
    return True


def _server_of(parts: SplitResult, prefix: str) -> str:
    if prefix and not prefix.startswith("/"):
        raise InvalidLink("The server path must start with '/'.")
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{prefix}"


def _decodes_to(text: str, size: int) -> bool:
    # b64url_decode takes only text that is the canonical encoding of what it returns, so
    # nothing outside the url-safe alphabet (+, /, padding, spaces, non-ASCII) gets through.
    try:
        return len(b64url_decode(text)) == size
    except ValueError:
        return False
