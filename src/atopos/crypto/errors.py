"""Errors raised by `atopos.crypto`.

`crypto` imports nothing else of Atopos, so these do not derive from `atopos.errors`; the
client and server map them (a `DecryptionFailed` is a refusal, never a 500).
"""

from __future__ import annotations

__all__ = [
    "CryptoError",
    "DecryptionFailed",
    "DeviceRequired",
    "PassphraseRequired",
    "UnsupportedEnvelope",
]


class CryptoError(Exception):
    """Base of every error `atopos.crypto` raises on purpose: the ones below, and
    `tokens.InvalidToken` (a bad challenge or ticket) and `device.InvalidDeviceCode` (a
    mistyped device code, also a ValueError), which live beside the code that raises them."""


class DecryptionFailed(CryptoError):
    """The envelope could not be opened.

    Deliberately opaque: wrong key, wrong passphrase, tampering, truncation and malformed
    content all look the same, so a failure teaches an attacker nothing.
    """

    def __init__(self, message: str = "The secret could not be decrypted.") -> None:
        super().__init__(message)


class UnsupportedEnvelope(DecryptionFailed):
    """The envelope names a format version or algorithm this code does not know (upgrade)."""

    def __init__(
        self, message: str = "The secret uses a newer format; upgrade Atopos to open it."
    ) -> None:
        super().__init__(message)


class PassphraseRequired(CryptoError):
    """The envelope is locked with a passphrase and none was given."""

    def __init__(self, message: str = "This secret needs its passphrase.") -> None:
        super().__init__(message)


class DeviceRequired(CryptoError):
    """The envelope is sealed to a device and no device was given to open it."""

    def __init__(self, message: str = "This secret can only be opened on its device.") -> None:
        super().__init__(message)
