"""Sphinx packets (Danezis and Goldberg, 2009): fixed-size onion packets for the mixnet.

Creating a forward packet, a single-use reply block (SURB) and a reply from a SURB, and
processing one hop. Sans-I/O: keys, randomness (`RandomBytes`) and delays come in as
arguments. The format is docs/protocol/sphinx.md; every bad packet raises `InvalidPacket`,
which never says which check failed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from atopos.crypto.errors import CryptoError
from atopos.crypto.hkdf import derive_key
from atopos.crypto.randomness import RandomBytes, draw
from atopos.crypto.sphinx_lioness import LIONESS_KEY_BYTES, lioness_decrypt, lioness_encrypt
from atopos.crypto.sphinx_x25519 import x25519

__all__ = [
    "ADDRESS_BYTES",
    "COMMAND_DELIVER",
    "COMMAND_DELIVER_REPLY",
    "COMMAND_RELAY",
    "HEADER_BYTES",
    "MAX_HOPS",
    "MESSAGE_BYTES",
    "PACKET_BYTES",
    "PAYLOAD_BYTES",
    "Deliver",
    "DeliverReply",
    "Hop",
    "InvalidPacket",
    "Relay",
    "Surb",
    "SurbSecrets",
    "create_forward_packet",
    "create_reply_packet",
    "create_surb",
    "open_reply",
    "process_packet",
]

MAX_HOPS = 5
ADDRESS_BYTES = 32
_KEY_BYTES = 32
_MAC_BYTES = 32
_DELAY_BYTES = 4
_TAG_BYTES = 16
# One hop's routing block: command (1) || address (32) || delay in ms (4) || next MAC (32).
ROUTING_BYTES = 1 + ADDRESS_BYTES + _DELAY_BYTES + _MAC_BYTES
_BETA_BYTES = MAX_HOPS * ROUTING_BYTES
# alpha (32) || beta (5 * 69) || gamma (32)
HEADER_BYTES = _KEY_BYTES + _BETA_BYTES + _MAC_BYTES
# The sender's message: 2 KiB, padded by the layer above.
MESSAGE_BYTES = 2048
# The encrypted payload: 16 zero bytes (the integrity tag) || message, under Lioness.
PAYLOAD_BYTES = _TAG_BYTES + MESSAGE_BYTES
PACKET_BYTES = HEADER_BYTES + PAYLOAD_BYTES
MAX_DELAY_MS = 2**32 - 1

COMMAND_RELAY = 1
COMMAND_DELIVER = 2
COMMAND_DELIVER_REPLY = 3

_HOP_INFO = b"atopos sphinx v1 hop keys"
_SURB_INFO = b"atopos sphinx v1 surb payload key"
# header key, MAC key, Lioness key, blinding scalar, replay tag.
_HOP_KEYS_BYTES = _KEY_BYTES + _KEY_BYTES + LIONESS_KEY_BYTES + _KEY_BYTES + _KEY_BYTES
# CTR from a zero counter: every key here encrypts exactly one stream.
_CTR_FROM_ZERO = modes.CTR(bytes(16))
_ZERO_TAG = bytes(_TAG_BYTES)


class InvalidPacket(CryptoError):
    """The packet was refused: wrong size, bad group element, bad MAC, bad payload tag or an
    unknown command all look the same."""


@dataclass(frozen=True, slots=True)
class Hop:
    """One hop of a route: the node's X25519 public key, its address, and how long the
    sender asks it to hold the packet (milliseconds, chosen by the sender)."""

    public_key: bytes
    address: bytes
    delay_ms: int


@dataclass(frozen=True, slots=True)
class Relay:
    """Hold `packet` for `delay_ms`, then send it to `next_address`."""

    next_address: bytes
    delay_ms: int
    packet: bytes
    replay_tag: bytes


@dataclass(frozen=True, slots=True)
class Deliver:
    """Final hop of a forward packet: hand `message` to the mailbox `address` after
    `delay_ms`."""

    address: bytes
    message: bytes
    replay_tag: bytes
    delay_ms: int = 0


@dataclass(frozen=True, slots=True)
class DeliverReply:
    """Final hop of a reply: hand the opaque `payload` to the SURB's owner, `surb_id`, after
    `delay_ms`."""

    surb_id: bytes
    payload: bytes
    replay_tag: bytes
    delay_ms: int = 0


@dataclass(frozen=True, slots=True)
class Surb:
    """What a SURB's owner gives a correspondent: where to send, the header, the payload key."""

    first_address: bytes
    header: bytes
    payload_key: bytes


@dataclass(frozen=True, slots=True)
class SurbSecrets:
    """What the SURB's owner keeps, under `surb_id`, to open the one reply."""

    surb_id: bytes
    payload_key: bytes
    hop_payload_keys: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class _HopKeys:
    header: bytes
    mac: bytes
    payload: bytes
    blinding: bytes
    replay_tag: bytes


def _hop_keys(shared: bytes) -> _HopKeys:
    keys = derive_key(shared, info=_HOP_INFO, length=_HOP_KEYS_BYTES)
    payload_end = 64 + LIONESS_KEY_BYTES
    return _HopKeys(
        header=keys[:32],
        mac=keys[32:64],
        payload=keys[64:payload_end],
        blinding=keys[payload_end : payload_end + 32],
        replay_tag=keys[payload_end + 32 :],
    )


def _stream(key: bytes, length: int) -> bytes:
    encryptor = Cipher(algorithms.AES(key), _CTR_FROM_ZERO).encryptor()
    return encryptor.update(bytes(length))


def _xor(left: bytes, right: bytes) -> bytes:
    size = len(left)
    return (int.from_bytes(left, "little") ^ int.from_bytes(right[:size], "little")).to_bytes(
        size, "little"
    )


def _mac(key: bytes, beta: bytes) -> bytes:
    return hmac.digest(key, beta, hashlib.sha256)


def _routing(command: int, address: bytes, delay_ms: int, next_mac: bytes) -> bytes:
    return bytes([command]) + address + delay_ms.to_bytes(_DELAY_BYTES, "big") + next_mac


def _check_route(route: Sequence[Hop], final_address: bytes) -> None:
    if not 1 <= len(route) <= MAX_HOPS:
        raise ValueError(f"a route has 1 to {MAX_HOPS} hops")
    for hop in route:
        if len(hop.public_key) != _KEY_BYTES or len(hop.address) != ADDRESS_BYTES:
            raise ValueError("a hop has a 32-byte key and a 32-byte address")
        if not 0 <= hop.delay_ms <= MAX_DELAY_MS:
            raise ValueError("a delay is 0 to 2**32 - 1 milliseconds")
    if len(final_address) != ADDRESS_BYTES:
        raise ValueError("the final address is 32 bytes")


# The order of Curve25519's prime-order subgroup, and 8's inverse modulo it.
_ORDER = 2**252 + 27742317777372353535851937790883648493
_INVERSE_OF_8 = pow(8, -1, _ORDER)


def _clamped(raw: bytes) -> int:
    """The scalar X25519 multiplies by for the 32 bytes `raw` (RFC 7748, section 5)."""
    return (int.from_bytes(raw, "little") & (2**255 - 8)) | 2**254


def _x25519_scalar(product: int) -> bytes | None:
    """32 bytes that X25519 takes unchanged and that multiply by +-`product` on the
    prime-order subgroup (u-coordinates cannot tell the sign), or None for the about 2**-125
    of products with no such bytes. A clamped scalar is 8c with 2**251 <= c < 2**252."""
    for scalar in (product * _INVERSE_OF_8 % _ORDER, -product * _INVERSE_OF_8 % _ORDER):
        if 2**251 <= scalar < 2**252:
            return (8 * scalar).to_bytes(_KEY_BYTES, "little")
    return None


def _shared_secrets(route: Sequence[Hop], ephemeral: bytes) -> tuple[bytes, list[_HopKeys]]:
    """alpha_0 and each hop's keys: s_i = b_{i-1} ... b_0 x Y_i.

    Chained X25519 (one exchange per earlier blinding) costs O(hops^2); instead the product
    of the clamped scalars is kept modulo the group order and applied in one exchange per
    hop. Both give the same bytes: every clamped scalar is a multiple of 8, which removes any
    small-order part of Y_i, and on the prime-order part only the product modulo the order
    counts. The chain stays for the products no 32 bytes can carry."""
    private = X25519PrivateKey.from_private_bytes(ephemeral)
    alpha = private.public_key().public_bytes_raw()
    product = _clamped(ephemeral)
    keys: list[_HopKeys] = []
    for index, hop in enumerate(route):
        if index:
            product = product * _clamped(keys[-1].blinding) % _ORDER
        scalar = _x25519_scalar(product) if index else None
        try:
            if not index:
                # The product is still x itself: the key object that gave alpha serves.
                shared = private.exchange(X25519PublicKey.from_public_bytes(hop.public_key))
            elif scalar is None:
                public = X25519PublicKey.from_public_bytes(hop.public_key)
                shared = _chained_exchange(ephemeral, [k.blinding for k in keys], public)
            else:
                # Raw X25519: a pyca key object would first derive a public key we never use.
                shared = x25519(scalar, hop.public_key)
        except ValueError:
            raise ValueError("a hop's public key is not a usable X25519 key") from None
        keys.append(_hop_keys(shared))
    return alpha, keys


def _chained_exchange(ephemeral: bytes, blindings: list[bytes], public: X25519PublicKey) -> bytes:
    """The paper's chain on pyca, one exchange per earlier blinding: the fallback, and the
    reference the tests hold the shortcut to."""
    shared = X25519PrivateKey.from_private_bytes(ephemeral).exchange(public)
    for blinding in blindings:
        shared = X25519PrivateKey.from_private_bytes(blinding).exchange(
            X25519PublicKey.from_public_bytes(shared)
        )
    return shared


def _header(
    route: Sequence[Hop], final_command: int, final_address: bytes, random_bytes: RandomBytes
) -> tuple[bytes, list[_HopKeys]]:
    _check_route(route, final_address)
    alpha, keys = _shared_secrets(route, draw(random_bytes, _KEY_BYTES))
    hops = len(route)
    stream_bytes = _BETA_BYTES + ROUTING_BYTES
    streams = [_stream(k.header, stream_bytes) for k in keys]
    filler = b""
    for i in range(1, hops):
        filler = _xor(
            filler + bytes(ROUTING_BYTES), streams[i - 1][stream_bytes - i * ROUTING_BYTES :]
        )
    last = hops - 1
    plain = _routing(final_command, final_address, route[last].delay_ms, bytes(_MAC_BYTES))
    padding = draw(random_bytes, _BETA_BYTES - len(filler) - ROUTING_BYTES)
    beta = _xor(plain + padding, streams[last]) + filler
    mac = _mac(keys[last].mac, beta)
    for i in range(last - 1, -1, -1):
        plain = _routing(COMMAND_RELAY, route[i + 1].address, route[i].delay_ms, mac)
        beta = _xor(plain + beta[: _BETA_BYTES - ROUTING_BYTES], streams[i])
        mac = _mac(keys[i].mac, beta)
    return alpha + beta + mac, keys


def create_forward_packet(
    route: Sequence[Hop], recipient: bytes, message: bytes, random_bytes: RandomBytes
) -> bytes:
    """A PACKET_BYTES packet for route[0] that the last hop delivers to `recipient`.

    `message` is exactly MESSAGE_BYTES (the layer above pads). Hop i holds the packet for
    route[i].delay_ms before relaying it, the last hop before delivering it."""
    if len(message) != MESSAGE_BYTES:
        raise ValueError(f"a Sphinx message is exactly {MESSAGE_BYTES} bytes")
    header, keys = _header(route, COMMAND_DELIVER, recipient, random_bytes)
    payload = _ZERO_TAG + bytes(message)
    for hop_keys in reversed(keys):
        payload = lioness_encrypt(hop_keys.payload, payload)
    return header + payload


def create_surb(
    route: Sequence[Hop], surb_id: bytes, random_bytes: RandomBytes
) -> tuple[Surb, SurbSecrets]:
    """A single-use reply block whose reply the last hop of `route` (the owner's gateway)
    delivers to `surb_id`, and the secrets its owner keeps to open that reply."""
    header, keys = _header(route, COMMAND_DELIVER_REPLY, surb_id, random_bytes)
    payload_key = derive_key(
        draw(random_bytes, _KEY_BYTES), info=_SURB_INFO, length=LIONESS_KEY_BYTES
    )
    surb = Surb(first_address=route[0].address, header=header, payload_key=payload_key)
    secrets = SurbSecrets(
        surb_id=bytes(surb_id),
        payload_key=payload_key,
        hop_payload_keys=tuple(k.payload for k in keys),
    )
    return surb, secrets


def create_reply_packet(surb: Surb, message: bytes) -> tuple[bytes, bytes]:
    """(first hop address, packet): the reply to the SURB's owner; `message` is MESSAGE_BYTES."""
    if len(message) != MESSAGE_BYTES:
        raise ValueError(f"a Sphinx message is exactly {MESSAGE_BYTES} bytes")
    if len(surb.header) != HEADER_BYTES or len(surb.payload_key) != LIONESS_KEY_BYTES:
        raise ValueError("not a Sphinx SURB")
    payload = lioness_encrypt(surb.payload_key, _ZERO_TAG + bytes(message))
    return surb.first_address, surb.header + payload


def open_reply(secrets: SurbSecrets, payload: bytes) -> bytes:
    """The replier's message from the payload delivered for this SURB; InvalidPacket if the
    payload was changed on the way (its zero tag does not come back)."""
    if len(payload) != PAYLOAD_BYTES:
        raise InvalidPacket
    block = bytes(payload)
    for hop_key in reversed(secrets.hop_payload_keys):
        block = lioness_encrypt(hop_key, block)
    block = lioness_decrypt(secrets.payload_key, block)
    if not hmac.compare_digest(block[:_TAG_BYTES], _ZERO_TAG):
        raise InvalidPacket
    return block[_TAG_BYTES:]


def process_packet(private_key: X25519PrivateKey, packet: bytes) -> Relay | Deliver | DeliverReply:
    """One hop's work on `packet` with this node's key for the current epoch.

    The caller checks `replay_tag` against the tags it stored for this key epoch, drops the
    packet if the tag is there and stores it otherwise (docs/protocol/sphinx.md, "Replay")."""
    if len(packet) != PACKET_BYTES:
        raise InvalidPacket
    packet = bytes(packet)
    alpha = packet[:_KEY_BYTES]
    beta = packet[_KEY_BYTES : _KEY_BYTES + _BETA_BYTES]
    gamma = packet[_KEY_BYTES + _BETA_BYTES : HEADER_BYTES]
    try:
        shared = private_key.exchange(X25519PublicKey.from_public_bytes(alpha))
    except ValueError:
        raise InvalidPacket from None
    keys = _hop_keys(shared)
    if not hmac.compare_digest(_mac(keys.mac, beta), gamma):
        raise InvalidPacket
    opened = _xor(beta + bytes(ROUTING_BYTES), _stream(keys.header, _BETA_BYTES + ROUTING_BYTES))
    command = opened[0]
    address = opened[1 : 1 + ADDRESS_BYTES]
    delay_ms = int.from_bytes(opened[1 + ADDRESS_BYTES : 1 + ADDRESS_BYTES + _DELAY_BYTES], "big")
    next_mac = opened[ROUTING_BYTES - _MAC_BYTES : ROUTING_BYTES]
    payload = lioness_decrypt(keys.payload, packet[HEADER_BYTES:])
    if command == COMMAND_RELAY:
        try:
            # Raw X25519 (libsodium): a pyca key object for the blinding scalar would cost a
            # second scalar multiplication, the public key we never use.
            next_alpha = x25519(keys.blinding, alpha)
        except ValueError:
            raise InvalidPacket from None
        next_packet = next_alpha + opened[ROUTING_BYTES:] + next_mac + payload
        return Relay(address, delay_ms, next_packet, keys.replay_tag)
    if command == COMMAND_DELIVER:
        if not hmac.compare_digest(payload[:_TAG_BYTES], _ZERO_TAG):
            raise InvalidPacket
        return Deliver(address, payload[_TAG_BYTES:], keys.replay_tag, delay_ms)
    if command == COMMAND_DELIVER_REPLY:
        return DeliverReply(address, payload, keys.replay_tag, delay_ms)
    raise InvalidPacket
