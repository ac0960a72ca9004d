"""`EnvelopeReader`: an `Opener` that may ask for the passphrase again.

A reveal consumes a view before the first byte arrives, so a mistyped passphrase must not
waste it. Until the envelope's first chunk authenticates (its metadata decodes), the reader
keeps the ciphertext received so far; when the passphrase turns out missing or wrong it asks
the prompt, starts a fresh `Opener` and replays that ciphertext. After the key is proven, or
when the envelope has no passphrase (a wrong link key cannot be fixed by asking), nothing
is kept and every failure is final.
"""

from __future__ import annotations

from collections.abc import Callable

from atopos.crypto.device import DeviceUnsealer
from atopos.crypto.envelope import MAX_CHUNK_SIZE_LOG2, Metadata, Opener
from atopos.crypto.errors import DecryptionFailed, PassphraseRequired, UnsupportedEnvelope

__all__ = ["MAX_PASSPHRASE_ATTEMPTS", "EnvelopeReader", "PassphrasePrompt"]

# Called with the number of earlier attempts (0 for the first ask); returns the passphrase.
PassphrasePrompt = Callable[[int], str]
MAX_PASSPHRASE_ATTEMPTS = 3
# Metadata decodes within the first two chunks of any valid envelope; past this much
# ciphertext the envelope is not one we can help by asking again.
_MAX_KEPT_BYTES = 2 << MAX_CHUNK_SIZE_LOG2


class EnvelopeReader:
    """Feed envelope bytes in, get content out; `finish()` proves the whole envelope."""

    __slots__ = ("_ask", "_device", "_kept", "_link_key", "_max_attempts", "_opener", "_prompts")

    def __init__(
        self,
        link_key: bytes,
        *,
        passphrase: str | None = None,
        ask_passphrase: PassphrasePrompt | None = None,
        max_attempts: int = MAX_PASSPHRASE_ATTEMPTS,
        device: DeviceUnsealer | None = None,
    ) -> None:
        self._link_key = link_key
        # A device-bound envelope needs it; it is consulted only when the header says so.
        self._device = device
        self._opener = Opener(link_key, passphrase, device=device)
        self._ask = ask_passphrase
        self._max_attempts = max_attempts
        self._prompts = 0
        # Ciphertext not yet proven to open with the current key; None once nothing is kept.
        self._kept: bytearray | None = bytearray() if ask_passphrase is not None else None

    @property
    def metadata(self) -> Metadata | None:
        return self._opener.metadata

    def feed(self, data: bytes) -> bytes:
        """Content available after `data`; may call the prompt while the key is unproven."""
        if self._kept is None:
            return self._opener.feed(data)
        self._kept += data
        kept = self._kept
        content = self._guarded(
            lambda opener: opener.feed(data), lambda opener: opener.feed(bytes(kept))
        )
        self._settle()
        return content

    def finish(self) -> bytes:
        """The last content; DecryptionFailed if the envelope is truncated or altered."""
        kept = self._kept
        if kept is None:
            content = self._opener.finish()
        else:
            content = self._guarded(
                lambda opener: opener.finish(),
                lambda opener: opener.feed(bytes(kept)) + opener.finish(),
            )
        self._kept = None
        self._link_key = b""
        self._device = None
        return content

    def _guarded(self, step: Callable[[Opener], bytes], replay: Callable[[Opener], bytes]) -> bytes:
        while True:
            try:
                return step(self._opener)
            except UnsupportedEnvelope:
                raise
            except PassphraseRequired:
                if self._ask is None or self._prompts >= self._max_attempts:
                    raise
            except DecryptionFailed:
                # Only a passphrase that came from the prompt may be asked for again; one
                # from a file is the caller's final word.
                if self._prompts == 0 or self._prompts >= self._max_attempts:
                    raise
            assert self._ask is not None
            passphrase = self._ask(self._prompts)
            self._prompts += 1
            self._opener = Opener(self._link_key, passphrase, device=self._device)
            step = replay

    def _settle(self) -> None:
        opener, kept = self._opener, self._kept
        header = opener.header
        if (
            kept is None
            or opener.metadata is not None
            or (header is not None and not header.has_passphrase)
            or len(kept) > _MAX_KEPT_BYTES
        ):
            self._kept = None
