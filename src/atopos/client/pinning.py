"""Certificate pinning by SubjectPublicKeyInfo (SPKI): parse and print pins, and make an
`ssl.SSLContext` refuse, right after the TLS handshake, any server whose key is not pinned.

A pin is the SHA-256 of the DER-encoded SubjectPublicKeyInfo of the server's (leaf)
certificate, as in HPKP's `pin-sha256`. Its canonical form is ``sha256/<base64>`` (standard
base64 with padding, 44 characters); bare base64, curl's ``sha256//<base64>`` and 64 hex
digits are accepted as well. Several pins (a key in use and a backup key) are separated by
commas, semicolons or spaces; a server matches when its key matches any of them.

Where the check happens: `pin_context` sets the context's `sslsocket_class` and
`sslobject_class` (documented hooks of `ssl.SSLContext`) to subclasses whose `do_handshake`
compares the peer's key with the pins as soon as the handshake has finished and, on a
mismatch, closes the connection and raises `PinMismatch`. `wrap_socket` (what httpx's
transport calls) runs the handshake before it returns the socket, so no request byte can
be written to a server that does not match. Writes on a socket whose key was not checked
yet run the handshake (and so the check) first.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import datetime
import hashlib
import re
import socket
import ssl
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from atopos.errors import InvalidInput, NetworkError

__all__ = [
    "PIN_MISMATCH",
    "CertificateInfo",
    "PinMismatch",
    "describe_certificate",
    "fetch_server_certificate",
    "format_pin",
    "parse_pins",
    "pin_context",
    "spki_sha256",
]

PIN_MISMATCH = "The server's key does not match the pinned key; refusing to send anything."
_DIGEST_BYTES = 32
_SEPARATORS = re.compile(r"[\s,;]+")
_CONNECT_TIMEOUT = 10.0


class PinMismatch(NetworkError):
    """The server's public key is not one of the pinned keys; nothing was sent to it."""

    def __init__(self) -> None:
        super().__init__(PIN_MISMATCH)


# What parsing a certificate raises when it is malformed or uses an unknown key type.
_UNREADABLE = (ValueError, UnsupportedAlgorithm)

# -- pins -------------------------------------------------------------------------------


def spki_sha256(certificate_der: bytes) -> bytes:
    """SHA-256 over the SubjectPublicKeyInfo of a DER certificate (the pinned value)."""
    certificate = x509.load_der_x509_certificate(certificate_der)
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


def format_pin(digest: bytes) -> str:
    """The canonical form, ``sha256/<base64>``."""
    return "sha256/" + base64.b64encode(digest).decode("ascii")


def parse_pins(text: str) -> tuple[bytes, ...]:
    """Every pin in `text` (see the module docstring for the forms) as 32-byte digests."""
    digests: list[bytes] = []
    for item in _SEPARATORS.split(text.strip()):
        if item:
            digest = _parse_one(item)
            if digest not in digests:
                digests.append(digest)
    if not digests:
        raise InvalidInput("The key pin is empty; give it as sha256/<base64>.")
    return tuple(digests)


def _parse_one(item: str) -> bytes:
    candidates = [item]
    if item[:7].lower() == "sha256/":
        value = item[7:]
        # Base64 may itself start with "/": ours is then "sha256//..." too, and curl's
        # "sha256//<base64>" is one character longer; the length tells them apart.
        candidates = [value, value[1:]] if value.startswith("/") else [value]
    for value in candidates:
        if len(value) == 2 * _DIGEST_BYTES and re.fullmatch(r"[0-9A-Fa-f]+", value):
            return bytes.fromhex(value)
        if re.fullmatch(r"[A-Za-z0-9+/]{43}=?", value):
            with contextlib.suppress(binascii.Error, ValueError):
                digest = base64.b64decode(value.rstrip("=") + "=", validate=True)
                if len(digest) == _DIGEST_BYTES:
                    return digest
    raise InvalidInput(
        "A key pin must be sha256/<base64 of the SHA-256 of the server's public key>, "
        "as printed by `atopos pin URL`."
    )


# -- the check --------------------------------------------------------------------------


def _check(certificate_der: bytes | None, pins: frozenset[bytes]) -> bool:
    if not certificate_der:
        return False
    try:
        return spki_sha256(certificate_der) in pins
    except _UNREADABLE:  # a certificate cryptography cannot parse matches no pin
        return False


def pin_context(context: ssl.SSLContext, pins: Iterable[bytes]) -> ssl.SSLContext:
    """Make every connection through `context` check the server's key against `pins` right
    after its handshake (the context is changed in place and returned). CA verification
    stays as the context has it: the pin is checked in addition to it."""
    pinned = frozenset(pins)
    if not pinned or any(len(pin) != _DIGEST_BYTES for pin in pinned):
        raise ValueError("pins must be one or more SHA-256 digests")

    class PinnedSocket(ssl.SSLSocket):
        _atopos_pin_checked = False

        def do_handshake(self, block: bool = False) -> None:
            super().do_handshake(block)
            if not _check(self.getpeercert(binary_form=True), pinned):
                with contextlib.suppress(OSError):
                    self.close()
                raise PinMismatch()
            self._atopos_pin_checked = True

        # OpenSSL would run a handshake not done yet inside the first write, together with
        # the data; run it (and the check) on its own first.
        def send(self, data: Any, flags: int = 0) -> int:
            self._ensure_checked()
            return super().send(data, flags)

        def write(self, data: Any) -> int:
            self._ensure_checked()
            return super().write(data)

        def _ensure_checked(self) -> None:
            if not self._atopos_pin_checked:
                self.do_handshake()

    class PinnedObject(ssl.SSLObject):
        _atopos_pin_checked = False

        def do_handshake(self) -> None:
            super().do_handshake()
            if not _check(self.getpeercert(binary_form=True), pinned):
                raise PinMismatch()
            self._atopos_pin_checked = True

        def write(self, data: Any) -> int:
            if not self._atopos_pin_checked:
                self.do_handshake()
            return super().write(data)

    context.sslsocket_class = PinnedSocket
    context.sslobject_class = PinnedObject
    return context


# -- `atopos pin` -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class CertificateInfo:
    pin: str
    subject: str
    issuer: str
    not_after: datetime.datetime
    names: tuple[str, ...]


def describe_certificate(certificate_der: bytes) -> CertificateInfo:
    try:
        return _describe(certificate_der)
    except _UNREADABLE:
        raise NetworkError("The server presented a certificate that cannot be read.") from None


def _describe(certificate_der: bytes) -> CertificateInfo:
    certificate = x509.load_der_x509_certificate(certificate_der)
    try:
        alternative = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
        names = tuple(
            [*alternative.get_values_for_type(x509.DNSName)]
            + [str(ip) for ip in alternative.get_values_for_type(x509.IPAddress)]
        )
    except x509.ExtensionNotFound:
        names = ()
    return CertificateInfo(
        pin=format_pin(spki_sha256(certificate_der)),
        subject=certificate.subject.rfc4514_string() or "(empty)",
        issuer=certificate.issuer.rfc4514_string() or "(empty)",
        not_after=certificate.not_valid_after_utc,
        names=names,
    )


def fetch_server_certificate(server: str, context: ssl.SSLContext) -> bytes:
    """The DER certificate an https:// server presents, verified as `context` says."""
    parts = urlsplit(server)
    if parts.scheme != "https" or not parts.hostname:
        raise InvalidInput("Only an https:// server has a key to pin.")
    host, port = parts.hostname, parts.port or 443
    try:
        with (
            socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            certificate = tls.getpeercert(binary_form=True)
    except ssl.SSLCertVerificationError:
        raise NetworkError(f"The TLS certificate of {server} could not be verified.") from None
    except TimeoutError:
        raise NetworkError(f"The server at {server} did not answer in time.") from None
    except OSError:
        raise NetworkError(f"Could not connect to the server at {server}.") from None
    if not certificate:
        raise NetworkError(f"The server at {server} presented no certificate.")
    return certificate
