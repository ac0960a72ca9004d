"""The device as the secret flows see it: device codes typed by people, and this machine's
device loaded only when a secret turns out to need it (loading may ask for a passphrase)."""

from __future__ import annotations

from collections.abc import Callable

from atopos.crypto.base64url import b64url_decode
from atopos.crypto.device import DeviceKeys, DevicePublic, InvalidDeviceCode, parse_device_code
from atopos.crypto.errors import DeviceRequired
from atopos.errors import InvalidInput

__all__ = ["DeviceLoader", "InvalidDeviceCodeInput", "LazyDevice", "parse_device_code_input"]

# Returns this machine's device keys, or None when it has no device.
DeviceLoader = Callable[[], DeviceKeys | None]


class InvalidDeviceCodeInput(InvalidInput):
    """A device code given on the command line or pasted that is not exactly one."""


def parse_device_code_input(text: str) -> DevicePublic:
    """`parse_device_code` with the error as an Atopos input error (exit 2 in the CLI)."""
    try:
        return parse_device_code(text)
    except InvalidDeviceCode as error:
        raise InvalidDeviceCodeInput(str(error)) from None


class LazyDevice:
    """Calls the loader at most once, on first use; a `DeviceUnsealer` for `Opener`."""

    __slots__ = ("_is_loaded", "_keys", "_load")

    def __init__(self, load: DeviceLoader | None) -> None:
        self._load = load
        self._keys: DeviceKeys | None = None
        self._is_loaded = load is None

    def get(self) -> DeviceKeys | None:
        if not self._is_loaded:
            assert self._load is not None
            self._keys = self._load()
            self._is_loaded = True
        return self._keys

    def sign_proof(self, secret_id: str, challenge: str) -> bytes | None:
        """The device proof for a bound secret's ticket, or None when there is no device."""
        keys = self.get()
        return None if keys is None else keys.sign_proof(b64url_decode(secret_id), challenge)

    def _required(self) -> DeviceKeys:
        keys = self.get()
        if keys is None:
            raise DeviceRequired
        return keys

    @property
    def sealing_key(self) -> bytes:
        return self._required().sealing_key

    def shared_secret(self, ephemeral_public: bytes) -> bytes:
        return self._required().shared_secret(ephemeral_public)
