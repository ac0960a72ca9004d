"""Room crypto pieces on their own (rooms.md sections 4-9): round trips and refusals."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.rooms_support import SeededRandom

from atopos.crypto.errors import DecryptionFailed
from atopos.crypto.padding import padded_size
from atopos.crypto.room_keys import (
    MAX_PROFILE_TEXT_BYTES,
    SEALED_PROFILE_BYTES,
    MemberKeys,
    derive_room_secrets,
    open_invite_link,
    open_metadata,
    seal_invite_link,
    seal_metadata,
    verify_signature,
)
from atopos.crypto.room_message import MAX_BODY_BYTES, decrypt_message, encrypt_message
from atopos.crypto.room_ratchet import (
    MAX_SKIP,
    MAX_SKIPPED_KEYS,
    EpochChains,
    MessageKey,
    MessageKeyUnavailable,
)
from atopos.crypto.room_seal import open_secret, seal_secret

ROOM = bytes(range(16))
SECRETS = derive_room_secrets(b"\x01" * 32, b"\x02" * 32, ROOM)


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=40).filter(lambda t: len(t.encode("utf-8", "surrogatepass")) <= 126))
def test_names_round_trip_at_one_size(name: str) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return
    sealed = seal_metadata(SECRETS, name, b"aad", SeededRandom(name))
    assert len(sealed) == SEALED_PROFILE_BYTES
    assert open_metadata(SECRETS, sealed, b"aad") == name
    with pytest.raises(DecryptionFailed):
        open_metadata(SECRETS, sealed, b"other aad")
    other = derive_room_secrets(b"\x01" * 32, b"\x03" * 32, ROOM)
    with pytest.raises(DecryptionFailed):
        open_metadata(other, sealed, b"aad")


def test_names_too_long_are_refused() -> None:
    with pytest.raises(ValueError, match="at most"):
        seal_metadata(SECRETS, "x" * (MAX_PROFILE_TEXT_BYTES + 1), b"", SeededRandom("n"))


def test_invite_seal_opens_only_with_its_secret_and_room() -> None:
    sealed = seal_invite_link(b"\x05" * 32, ROOM, b"\x01" * 32)
    assert open_invite_link(b"\x05" * 32, ROOM, sealed) == b"\x01" * 32
    for secret, room in ((b"\x06" * 32, ROOM), (b"\x05" * 32, bytes(16))):
        with pytest.raises(DecryptionFailed):
            open_invite_link(secret, room, sealed)


def test_seal_opens_only_for_its_recipient_and_context() -> None:
    alice = MemberKeys.generate(SeededRandom("alice"))
    bob = MemberKeys.generate(SeededRandom("bob"))
    ephemeral, sealed = seal_secret(alice.seal_key, b"\x09" * 32, b"\x04" * 32, b"ctx")
    assert open_secret(alice, ephemeral, sealed, b"ctx") == b"\x09" * 32
    for keys, aad in ((bob, b"ctx"), (alice, b"other")):
        with pytest.raises(DecryptionFailed):
            open_secret(keys, ephemeral, sealed, aad)
    with pytest.raises(DecryptionFailed):
        open_secret(alice, bytes(32), sealed, b"ctx")  # a small-order ephemeral key
    with pytest.raises(ValueError, match="not usable"):
        seal_secret(bytes(32), b"\x09" * 32, b"\x04" * 32, b"ctx")


def test_signatures_never_raise() -> None:
    keys = MemberKeys.generate(SeededRandom("s"))
    signature = keys.sign(b"m")
    assert verify_signature(keys.sign_key, signature, b"m")
    assert not verify_signature(keys.sign_key, signature, b"n")
    assert not verify_signature(bytes(32), signature, b"m")
    assert not verify_signature(keys.sign_key, signature[:-1], b"m")


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=MAX_BODY_BYTES))
def test_messages_are_padded_to_buckets_and_round_trip(body: bytes) -> None:
    key = MessageKey(0, b"\x07" * 32, b"\x08" * 12)
    ciphertext = encrypt_message(key, b"aad", body)
    assert len(ciphertext) == padded_size(4 + len(body)) + 16
    assert decrypt_message(key, b"aad", ciphertext) == body
    with pytest.raises(DecryptionFailed):
        decrypt_message(key, b"aaD", ciphertext)


def test_a_message_over_the_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="at most"):
        encrypt_message(MessageKey(0, b"\x07" * 32, b"\x08" * 12), b"", bytes(MAX_BODY_BYTES + 1))


def test_ratchet_keys_are_used_once_and_skips_are_bounded() -> None:
    sender = EpochChains(b"\x01" * 32, ROOM, 1, [0, 1], own_index=0)
    receiver = EpochChains(b"\x01" * 32, ROOM, 1, [0, 1], own_index=1)
    sent = [sender.next_send_key() for _ in range(5)]
    assert receiver.receive_key(0, 3) == sent[3]
    assert receiver.skipped_counters(0) == [0, 1, 2]
    assert receiver.receive_key(0, 1) == sent[1]
    for counter in (1, 3):
        with pytest.raises(MessageKeyUnavailable):
            receiver.receive_key(0, counter)
    with pytest.raises(MessageKeyUnavailable):
        receiver.receive_key(0, 4 + MAX_SKIP + 1)
    with pytest.raises(MessageKeyUnavailable):
        receiver.receive_key(1, 0)  # its own chain
    with pytest.raises(MessageKeyUnavailable):
        receiver.receive_key(7, 0)  # not a member
    receiver.receive_key(0, 4 + MAX_SKIP)
    assert len(receiver.skipped_counters(0)) == MAX_SKIPPED_KEYS
    with pytest.raises(MessageKeyUnavailable):
        receiver.receive_key(0, 0)  # forgotten: the oldest went first
