"""Device-bound envelopes (flags bit 1, docs/protocol/envelope.md and device.md) against
tests/vectors/envelope_device*.json, round trips and failure modes."""

from __future__ import annotations

import os
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.envelope_vectors import Replay, argon2_of, load, metadata_of

from atopos.client.device import LazyDevice
from atopos.client.envelope_reader import EnvelopeReader
from atopos.crypto import envelope as envelope_module
from atopos.crypto.device import (
    DeviceKeys,
    DevicePublic,
    open_device_secret,
    seal_device_secret,
)
from atopos.crypto.envelope import (
    DEVICE_FIELDS_BYTES,
    HEADER_BYTES_MAX,
    HEADER_BYTES_WITH_PASSPHRASE,
    HEADER_BYTES_WITHOUT_PASSPHRASE,
    Argon2Params,
    Metadata,
    Opener,
    Sealer,
    open_envelope,
    parse_header,
    seal,
    sealed_size,
)
from atopos.crypto.errors import (
    DecryptionFailed,
    DeviceRequired,
    PassphraseRequired,
    UnsupportedEnvelope,
)
from atopos.crypto.kdf import derive_envelope_keys

# Their files are checked against the generator by test_envelope.py.
POSITIVE = load("envelope_device.json")
NEGATIVE = load("envelope_device_invalid.json")
ERRORS: dict[str, type[Exception]] = {
    "DecryptionFailed": DecryptionFailed,
    "UnsupportedEnvelope": UnsupportedEnvelope,
    "DeviceRequired": DeviceRequired,
}
CHEAP_ARGON2 = Argon2Params(memory_kib=8, iterations=1, lanes=1)
DEVICE_A = DeviceKeys.from_seed(bytes(range(32)))
DEVICE_B = DeviceKeys.from_seed(bytes(range(1, 33)))
KEY = bytes(range(100, 132))


class X25519Only:
    """A device that has only its X25519 key pair, like a browser with a non-extractable
    key: the envelope must open from `sealing_key` and `shared_secret` alone."""

    def __init__(self, private_hex: str) -> None:
        from cryptography.hazmat.primitives.asymmetric.x25519 import (
            X25519PrivateKey,
            X25519PublicKey,
        )

        self._private = X25519PrivateKey.from_private_bytes(bytes.fromhex(private_hex))
        self._public_type = X25519PublicKey
        self.calls = 0

    @property
    def sealing_key(self) -> bytes:
        return self._private.public_key().public_bytes_raw()

    def shared_secret(self, ephemeral_public: bytes) -> bytes:
        self.calls += 1
        return self._private.exchange(self._public_type.from_public_bytes(ephemeral_public))


def public_of(vector: dict[str, Any]) -> DevicePublic:
    device = vector["device"]
    return DevicePublic(
        bytes.fromhex(device["ed25519_public"]), bytes.fromhex(device["x25519_public"])
    )


# -- vectors -------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", POSITIVE, ids=[vector["name"] for vector in POSITIVE])
def test_sealing_reproduces_the_vector(vector: dict[str, Any]) -> None:
    random_bytes = Replay(bytes.fromhex(vector["random"]))
    metadata = metadata_of(vector)
    envelope = seal(
        bytes.fromhex(vector["content"]),
        metadata,
        bytes.fromhex(vector["link_key"]),
        random_bytes=random_bytes,
        passphrase=vector["passphrase"],
        argon2=argon2_of(vector),
        chunk_size_log2=vector["chunk_size_log2"],
        device=public_of(vector),
    )
    assert random_bytes.is_used_up  # salt, argon2 salt, eph, ds: all used
    assert envelope.hex() == vector["envelope"]
    assert sealed_size(
        metadata,
        has_passphrase=vector["passphrase"] is not None,
        chunk_size_log2=vector["chunk_size_log2"],
        is_device_bound=True,
    ) == len(envelope)


@pytest.mark.parametrize("vector", POSITIVE, ids=[vector["name"] for vector in POSITIVE])
def test_vector_intermediate_values(vector: dict[str, Any]) -> None:
    header = parse_header(bytes.fromhex(vector["envelope"]))
    assert header is not None
    assert header.raw.hex() == vector["header"]
    assert header.is_device_bound
    assert header.device_seal_aad.hex() == vector["seal_aad"]
    assert header.ephemeral_public is not None
    assert header.ephemeral_public.hex() == vector["ephemeral_public"]
    assert header.sealed_device_secret is not None
    assert header.sealed_device_secret.hex() == vector["sealed_device_secret"]
    device = X25519Only(vector["device"]["x25519_private"])
    assert device.shared_secret(header.ephemeral_public).hex() == vector["shared_secret"]
    ephemeral_public, sealed = seal_device_secret(
        bytes.fromhex(vector["device"]["x25519_public"]),
        bytes.fromhex(vector["device_secret"]),
        bytes.fromhex(vector["ephemeral_private"]),
        bytes.fromhex(vector["seal_aad"]),
    )
    assert (ephemeral_public.hex(), sealed.hex()) == (
        vector["ephemeral_public"],
        vector["sealed_device_secret"],
    )
    passphrase_key = vector["passphrase_key"] and bytes.fromhex(vector["passphrase_key"])
    keys = derive_envelope_keys(
        bytes.fromhex(vector["link_key"]),
        header.salt,
        passphrase_key or None,
        bytes.fromhex(vector["device_secret"]),
    )
    assert keys.key.hex() == vector["key"]
    assert keys.nonce_prefix.hex() == vector["nonce_prefix"]
    assert DeviceKeys.from_seed(bytes.fromhex(vector["device"]["seed"])).public == public_of(vector)


@pytest.mark.parametrize("vector", POSITIVE, ids=[vector["name"] for vector in POSITIVE])
def test_opening_with_the_x25519_key_pair_alone(vector: dict[str, Any]) -> None:
    envelope = bytes.fromhex(vector["envelope"])
    link_key = bytes.fromhex(vector["link_key"])
    device = X25519Only(vector["device"]["x25519_private"])
    metadata, content = open_envelope(envelope, link_key, vector["passphrase"], device=device)
    assert content.hex() == vector["content"]
    assert metadata.size == vector["metadata"]["size"]
    # One byte at a time, too.
    opener = Opener(link_key, vector["passphrase"], device=device)
    pieces = [opener.feed(envelope[i : i + 1]) for i in range(len(envelope))]
    pieces.append(opener.finish())
    assert b"".join(pieces).hex() == vector["content"]


@pytest.mark.parametrize("vector", NEGATIVE, ids=[vector["name"] for vector in NEGATIVE])
def test_invalid_vector_is_refused(vector: dict[str, Any]) -> None:
    envelope = bytes.fromhex(vector["envelope"])
    link_key = bytes.fromhex(vector["link_key"])
    error = ERRORS[vector["error"]]

    def device() -> X25519Only | None:
        return X25519Only(vector["device"]["x25519_private"]) if vector["device"] else None

    with pytest.raises(error) as caught:
        open_envelope(envelope, link_key, vector["passphrase"], device=device())
    assert type(caught.value) is error, vector["reason"]
    opener = Opener(link_key, vector["passphrase"], device=device())

    def byte_by_byte() -> None:
        for i in range(len(envelope)):
            opener.feed(envelope[i : i + 1])
        opener.finish()

    with pytest.raises(error):
        byte_by_byte()


def test_negative_vectors_cover_the_promised_cases() -> None:
    names = {vector["name"] for vector in NEGATIVE}
    assert {
        "no-device",
        "other-device",
        "tampered-ephemeral-public",
        "tampered-sealed-device-secret",
        "small-order-ephemeral-public",
        "device-flag-cleared",
        "unknown-flag-4",
        "seal-aad-without-flags",
        "device-secret-not-in-key",
    } <= names


# -- behaviour -----------------------------------------------------------------------------


def bound_envelope(content: bytes, passphrase: str | None = None) -> bytes:
    """`content` sealed as text under KEY for DEVICE_A (and the passphrase, if any)."""
    return seal(
        content,
        Metadata(kind="text", size=len(content)),
        KEY,
        random_bytes=os.urandom,
        passphrase=passphrase,
        argon2=CHEAP_ARGON2,
        device=DEVICE_A.public,
    )


def test_header_sizes_and_flags() -> None:
    for passphrase, flags, size in [
        (None, 2, HEADER_BYTES_WITHOUT_PASSPHRASE + DEVICE_FIELDS_BYTES),
        ("pw", 3, HEADER_BYTES_WITH_PASSPHRASE + DEVICE_FIELDS_BYTES),
    ]:
        envelope = bound_envelope(b"abc", passphrase)
        header = parse_header(envelope)
        assert header is not None
        assert envelope[7] == flags
        assert len(header.raw) == size
        for cut in range(size):
            assert parse_header(envelope[:cut]) is None
    assert HEADER_BYTES_MAX == 148


def test_wrong_device_fails_before_argon2_work(monkeypatch: pytest.MonkeyPatch) -> None:
    envelope = bound_envelope(b"abc", "pw")
    stretched: list[str] = []

    def recording(passphrase: str, *_args: object) -> bytes:
        stretched.append(passphrase)
        return bytes(32)

    monkeypatch.setattr(envelope_module, "derive_passphrase_key", recording)
    with pytest.raises(DecryptionFailed):
        open_envelope(envelope, KEY, "pw", device=DEVICE_B)
    assert stretched == []  # the device check came first and stopped it
    with pytest.raises(DecryptionFailed):
        open_envelope(envelope, KEY, "pw", device=DEVICE_A)
    assert stretched == ["pw"]


def test_device_required_is_not_a_failure_and_names_no_cause() -> None:
    envelope = bound_envelope(b"x")
    opener = Opener(KEY)
    with pytest.raises(DeviceRequired):
        opener.feed(envelope)
    # The caller can start again with a device and the bytes it already has.
    assert open_envelope(envelope, KEY, device=DEVICE_A)[1] == b"x"
    # Unbound envelopes ignore a device they are given.
    plain = seal(b"y", Metadata(kind="text", size=1), KEY, random_bytes=os.urandom)
    unused = X25519Only(os.urandom(32).hex())
    assert open_envelope(plain, KEY, device=unused)[1] == b"y"
    assert unused.calls == 0


def test_device_is_asked_for_before_the_passphrase() -> None:
    envelope = bound_envelope(b"x", "pw")
    with pytest.raises(DeviceRequired):
        open_envelope(envelope, KEY)
    with pytest.raises(PassphraseRequired):
        open_envelope(envelope, KEY, device=DEVICE_A)
    with pytest.raises(DecryptionFailed):
        open_envelope(envelope, KEY, "wrong", device=DEVICE_A)
    assert open_envelope(envelope, KEY, "pw", device=DEVICE_A)[1] == b"x"


def test_link_key_alone_opens_nothing_even_with_the_device_secret_unknown() -> None:
    # The "stolen full link" case: link key and envelope, no device.
    envelope = bound_envelope(b"secret")
    header = parse_header(envelope)
    assert header is not None
    guessed = derive_envelope_keys(KEY, header.salt)  # what a link holder could compute
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    sealed_chunk = envelope[len(header.raw) :]
    with pytest.raises(InvalidTag):
        AESGCM(guessed.key).decrypt(
            guessed.nonce_prefix + bytes(4) + b"\x01", sealed_chunk, header.raw
        )


def test_sealing_refuses_a_low_order_device_key() -> None:
    with pytest.raises(ValueError, match="X25519"):
        seal_device_secret(bytes(32), bytes(32), bytes(32), b"")


def test_envelope_reader_passes_the_device_and_asks_again_for_the_passphrase() -> None:
    envelope = bound_envelope(b"hello", "right")
    answers = iter(["wrong", "right"])
    reader = EnvelopeReader(KEY, ask_passphrase=lambda _attempt: next(answers), device=DEVICE_A)
    content = b"".join(reader.feed(envelope[i : i + 7]) for i in range(0, len(envelope), 7))
    assert content + reader.finish() == b"hello"


def test_lazy_device_loads_once_and_only_when_needed() -> None:
    loads: list[int] = []

    def load() -> DeviceKeys:
        loads.append(1)
        return DEVICE_A

    bound = bound_envelope(b"b")
    plain = seal(b"p", Metadata(kind="text", size=1), KEY, random_bytes=os.urandom)
    lazy = LazyDevice(load)
    assert open_envelope(plain, KEY, device=lazy)[1] == b"p"
    assert loads == []
    assert open_envelope(bound, KEY, device=lazy)[1] == b"b"
    assert open_envelope(bound, KEY, device=lazy)[1] == b"b"
    assert loads == [1]
    with pytest.raises(DeviceRequired):
        open_envelope(bound, KEY, device=LazyDevice(lambda: None))


_content = st.binary(max_size=600) | st.builds(
    lambda size, seed: random.Random(seed).randbytes(size),
    st.integers(min_value=0, max_value=5000),
    st.integers(min_value=0, max_value=2**32),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    content=_content,
    passphrase=st.none()
    | st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=20),
    chunk_size_log2=st.integers(min_value=10, max_value=12),
    piece=st.integers(min_value=1, max_value=3000),
)
def test_round_trip(
    content: bytes, passphrase: str | None, chunk_size_log2: int, piece: int
) -> None:
    metadata = Metadata(kind="file", size=len(content), name="f.bin")
    sealer = Sealer(
        KEY,
        metadata,
        random_bytes=os.urandom,
        passphrase=passphrase,
        argon2=CHEAP_ARGON2,
        chunk_size_log2=chunk_size_log2,
        device=DEVICE_A.public,
    )
    envelope = b"".join(
        sealer.update(content[i : i + piece]) for i in range(0, len(content), piece)
    )
    envelope += sealer.finalize()
    assert len(envelope) == sealer.size
    opener = Opener(KEY, passphrase, device=DEVICE_A)
    out = b"".join(opener.feed(envelope[i : i + piece]) for i in range(0, len(envelope), piece))
    assert out + opener.finish() == content
    with pytest.raises(DecryptionFailed):
        open_envelope(envelope, KEY, passphrase, device=DEVICE_B)
    with pytest.raises(DeviceRequired):
        open_envelope(envelope, KEY, passphrase)


_bound_envelope = seal(
    random.Random(7).randbytes(2500),
    Metadata(kind="file", size=2500),
    KEY,
    random_bytes=random.Random(8).randbytes,
    chunk_size_log2=10,
    device=DEVICE_A.public,
)


@settings(max_examples=300, deadline=None)
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_bit_flip_is_refused(position: int, bit: int) -> None:
    position %= len(_bound_envelope)
    tampered = bytearray(_bound_envelope)
    tampered[position] ^= 1 << bit
    # Flipping in the flags byte can ask for a passphrase or drop the device: never opens.
    with pytest.raises((DecryptionFailed, PassphraseRequired)):
        open_envelope(bytes(tampered), KEY, device=DEVICE_A)


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(min_value=0))
def test_any_truncation_is_refused(cut: int) -> None:
    cut %= len(_bound_envelope)
    with pytest.raises(DecryptionFailed):
        open_envelope(_bound_envelope[:cut], KEY, device=DEVICE_A)


def test_an_all_zero_shared_secret_is_refused_even_from_a_lax_unsealer() -> None:
    # An envelope crafted with a small-order ephemeral key, for a device implementation
    # that returns the all-zero exchange instead of refusing it: the seal key would then be
    # known to everyone, so the opener must refuse it itself.
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    class Lax:
        sealing_key = DEVICE_A.sealing_key

        def shared_secret(self, ephemeral_public: bytes) -> bytes:
            return bytes(32)

    honest = bound_envelope(b"z")
    header = parse_header(honest)
    assert header is not None
    aad = header.device_seal_aad
    ephemeral = bytes(32)
    seal_key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=ephemeral + DEVICE_A.sealing_key,
        info=b"atopos/device-seal/v1",
    ).derive(bytes(32))
    sealed = AESGCM(seal_key).encrypt(bytes(12), bytes(32), aad)
    with pytest.raises(DecryptionFailed):
        open_device_secret(Lax(), ephemeral, sealed, aad)
