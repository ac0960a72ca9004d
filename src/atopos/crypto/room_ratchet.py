"""Per-sender hash ratchets inside one epoch (docs/protocol/rooms.md, "Sender ratchet").

chain_key[0] = HKDF(ikm = epoch_secret, salt = room_id, info ".../sender" || u64(epoch) ||
u32(sender)); each step takes material = HMAC(chain_key, 0x01) and moves on to
chain_key = HMAC(chain_key, 0x02); the message key and nonce are HKDF(material, info
".../message-key"), 32 + 12 bytes. Every chain key and message key is dropped once used,
and the epoch secret itself is dropped as soon as the chains are derived, so the chains of
a copy of the state taken later open nothing sent before. (The member's X25519 key, kept
until its next self-update, still opens the epoch's commit: rooms.md, section 14.)

Out-of-order delivery: a receiver keeps the material of skipped counters, at most
`MAX_SKIPPED_KEYS` per epoch (the oldest is forgotten first) and never jumps more than
`MAX_SKIP` ahead in one chain. A counter already used or forgotten is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections import OrderedDict
from dataclasses import dataclass

from atopos.crypto.errors import CryptoError
from atopos.crypto.hkdf import derive_key

__all__ = [
    "MAX_COUNTER",
    "MAX_SKIP",
    "MAX_SKIPPED_KEYS",
    "EpochChains",
    "MessageKey",
    "MessageKeyUnavailable",
    "derive_chain_key",
    "derive_epoch_link",
    "message_key_from_material",
    "step_chain",
]

MAX_SKIP = 1000
MAX_SKIPPED_KEYS = 1000
MAX_COUNTER = 2**53 - 1  # what a JSON number carries exactly; a sender re-keys long before

_SENDER_INFO = b"atopos/room/v1/sender"
_MESSAGE_KEY_INFO = b"atopos/room/v1/message-key"
_EPOCH_LINK_INFO = b"atopos/room/v1/epoch-link"


class MessageKeyUnavailable(CryptoError):
    """No key for this counter: replayed, already used, too old (forgotten) or too far ahead."""

    def __init__(self, message: str = "No message key for this counter.") -> None:
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class MessageKey:
    """One message's AES-256-GCM key and nonce; used once, then dropped."""

    counter: int
    key: bytes
    nonce: bytes


def _hkdf(ikm: bytes, info: bytes, salt: bytes | None, length: int) -> bytes:
    return derive_key(ikm, info=info, salt=salt, length=length)


def derive_chain_key(epoch_secret: bytes, room_id: bytes, epoch: int, sender: int) -> bytes:
    """chain_key[0] of `sender` in `epoch`."""
    info = _SENDER_INFO + struct.pack(">QI", epoch, sender)
    return _hkdf(bytes(epoch_secret), info, bytes(room_id), 32)


def derive_epoch_link(epoch_secret: bytes, room_id: bytes) -> bytes:
    """HKDF(epoch_secret, salt room_id, info ".../epoch-link"): the salt of the next epoch's
    derivation, kept instead of the epoch secret (it opens no chain)."""
    return _hkdf(bytes(epoch_secret), _EPOCH_LINK_INFO, bytes(room_id), 32)


def step_chain(chain_key: bytes) -> tuple[bytes, bytes]:
    """(material, next chain key) = (HMAC(ck, 0x01), HMAC(ck, 0x02))."""
    material = hmac.new(chain_key, b"\x01", hashlib.sha256).digest()
    return material, hmac.new(chain_key, b"\x02", hashlib.sha256).digest()


def message_key_from_material(counter: int, material: bytes) -> MessageKey:
    okm = _hkdf(material, _MESSAGE_KEY_INFO, None, 44)
    return MessageKey(counter, okm[:32], okm[32:])


class _Chain:
    __slots__ = ("chain_key", "next_counter")

    def __init__(self, chain_key: bytes) -> None:
        self.chain_key = chain_key
        self.next_counter = 0


class EpochChains:
    """Every sender's chain of one epoch, for sending (own index) and receiving (the rest)."""

    __slots__ = ("_chains", "_skipped", "epoch", "epoch_link", "own_index")

    def __init__(
        self, epoch_secret: bytes, room_id: bytes, epoch: int, senders: list[int], own_index: int
    ) -> None:
        self.epoch = epoch
        self.own_index = own_index
        self.epoch_link = derive_epoch_link(epoch_secret, room_id)
        self._chains = {
            sender: _Chain(derive_chain_key(epoch_secret, room_id, epoch, sender))
            for sender in senders
        }
        self._skipped: OrderedDict[tuple[int, int], bytes] = OrderedDict()

    @property
    def sent_count(self) -> int:
        chain = self._chains.get(self.own_index)
        return 0 if chain is None else chain.next_counter

    def has_sender(self, sender: int) -> bool:
        return sender in self._chains

    def next_send_key(self) -> MessageKey:
        """The key of this member's next message; its chain moves on (the old key is gone)."""
        chain = self._chains[self.own_index]
        if chain.next_counter > MAX_COUNTER:
            raise MessageKeyUnavailable("This epoch's chain is used up.")
        material, chain.chain_key = step_chain(chain.chain_key)
        counter = chain.next_counter
        chain.next_counter += 1
        return message_key_from_material(counter, material)

    def receive_key(self, sender: int, counter: int) -> MessageKey:
        """The key for (sender, counter), deleted from the state as it is returned.

        Raises MessageKeyUnavailable for the own index, an unknown sender, a counter already
        used or forgotten, or one more than MAX_SKIP ahead. Callers check the frame's
        signature first, so only the sender itself can make a chain move."""
        chain = self._chains.get(sender)
        if chain is None or sender == self.own_index or not 0 <= counter <= MAX_COUNTER:
            raise MessageKeyUnavailable
        if counter < chain.next_counter:
            material = self._skipped.pop((sender, counter), None)
            if material is None:
                raise MessageKeyUnavailable
            return message_key_from_material(counter, material)
        if counter - chain.next_counter > MAX_SKIP:
            raise MessageKeyUnavailable
        while chain.next_counter < counter:
            material, chain.chain_key = step_chain(chain.chain_key)
            self._skipped[(sender, chain.next_counter)] = material
            chain.next_counter += 1
            if len(self._skipped) > MAX_SKIPPED_KEYS:
                self._skipped.popitem(last=False)
        material, chain.chain_key = step_chain(chain.chain_key)
        chain.next_counter += 1
        return message_key_from_material(counter, material)

    def skipped_counters(self, sender: int) -> list[int]:
        """Counters of `sender` skipped and not yet received (a gap the relay may have made)."""
        return sorted(counter for (who, counter) in self._skipped if who == sender)

    def drop_sender(self, sender: int) -> None:
        self._chains.pop(sender, None)
        for item in [item for item in self._skipped if item[0] == sender]:
            del self._skipped[item]
