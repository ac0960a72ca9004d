from __future__ import annotations

import importlib.util
import random
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.envelope_vectors import VECTORS, Replay, argon2_of, load, metadata_of

from atopos.crypto import envelope as envelope_module
from atopos.crypto.envelope import (
    HEADER_BYTES_WITH_PASSPHRASE,
    HEADER_BYTES_WITHOUT_PASSPHRASE,
    LINK_KEY_BYTES,
    TAG_BYTES,
    Argon2Params,
    Header,
    Metadata,
    Opener,
    Sealer,
    open_envelope,
    parse_header,
    seal,
    sealed_size,
)
from atopos.crypto.errors import (
    CryptoError,
    DecryptionFailed,
    DeviceRequired,
    PassphraseRequired,
    UnsupportedEnvelope,
)
from atopos.crypto.kdf import derive_envelope_keys, derive_passphrase_key
from atopos.crypto.padding import padded_size

POSITIVE = load("envelope.json")
NEGATIVE = load("envelope_invalid.json")
ERRORS: dict[str, type[DecryptionFailed]] = {
    "DecryptionFailed": DecryptionFailed,
    "UnsupportedEnvelope": UnsupportedEnvelope,
}

KEY = bytes(range(LINK_KEY_BYTES))
# Argon2's minimum cost: the tests exercise the format, not the hardness.
CHEAP_ARGON2 = Argon2Params(memory_kib=8, iterations=1, lanes=1)


def seeded_random(seed: int = 0) -> Callable[[int], bytes]:
    source = random.Random(seed)
    return source.randbytes


def open_in_slices(
    envelope: bytes, link_key: bytes, sizes: Iterator[int], passphrase: str | None = None
) -> tuple[Metadata | None, bytes]:
    opener = Opener(link_key, passphrase)
    output = bytearray()
    offset = 0
    while offset < len(envelope):
        size = next(sizes)
        output += opener.feed(envelope[offset : offset + size])
        offset += size
    output += opener.finish()
    return opener.metadata, bytes(output)


def ones() -> Iterator[int]:
    while True:
        yield 1


# -- positive vectors ----------------------------------------------------------------------


@pytest.mark.parametrize("vector", POSITIVE, ids=[vector["name"] for vector in POSITIVE])
def test_vector_seals_byte_for_byte(vector: dict[str, Any]) -> None:
    random_bytes = Replay(bytes.fromhex(vector["random"]))
    envelope = seal(
        bytes.fromhex(vector["content"]),
        metadata_of(vector),
        bytes.fromhex(vector["link_key"]),
        random_bytes=random_bytes,
        passphrase=vector["passphrase"],
        argon2=argon2_of(vector),
        chunk_size_log2=vector["chunk_size_log2"],
    )
    assert envelope.hex() == vector["envelope"]
    assert random_bytes.is_used_up


@pytest.mark.parametrize("vector", POSITIVE, ids=[vector["name"] for vector in POSITIVE])
def test_vector_seals_the_same_when_streamed_byte_by_byte(vector: dict[str, Any]) -> None:
    content = bytes.fromhex(vector["content"])
    sealer = Sealer(
        bytes.fromhex(vector["link_key"]),
        metadata_of(vector),
        random_bytes=Replay(bytes.fromhex(vector["random"])),
        passphrase=vector["passphrase"],
        argon2=argon2_of(vector),
        chunk_size_log2=vector["chunk_size_log2"],
    )
    pieces = [sealer.update(content[index : index + 1]) for index in range(len(content))]
    envelope = b"".join(pieces) + sealer.finalize()
    assert envelope.hex() == vector["envelope"]
    assert sealer.size == len(envelope)


@pytest.mark.parametrize("vector", POSITIVE, ids=[vector["name"] for vector in POSITIVE])
def test_vector_intermediate_values(vector: dict[str, Any]) -> None:
    envelope = bytes.fromhex(vector["envelope"])
    header = parse_header(envelope)
    assert header is not None
    assert header.chunk_size_log2 == vector["chunk_size_log2"]
    assert header.has_passphrase is (vector["passphrase"] is not None)
    passphrase_key = None
    if vector["passphrase"] is not None:
        assert header.argon2 == argon2_of(vector)
        assert header.argon2_salt is not None
        passphrase_key = derive_passphrase_key(
            vector["passphrase"], header.argon2_salt, header.argon2
        )
        assert passphrase_key.hex() == vector["passphrase_key"]
    keys = derive_envelope_keys(bytes.fromhex(vector["link_key"]), header.salt, passphrase_key)
    assert keys.key.hex() == vector["key"]
    assert keys.nonce_prefix.hex() == vector["nonce_prefix"]
    metadata = metadata_of(vector)
    assert vector["envelope"].startswith(header.raw.hex())
    assert sealed_size(
        metadata,
        has_passphrase=header.has_passphrase,
        chunk_size_log2=header.chunk_size_log2,
    ) == len(envelope)


@pytest.mark.parametrize("vector", POSITIVE, ids=[vector["name"] for vector in POSITIVE])
def test_vector_opens(vector: dict[str, Any]) -> None:
    envelope = bytes.fromhex(vector["envelope"])
    link_key = bytes.fromhex(vector["link_key"])
    expected = (metadata_of(vector), bytes.fromhex(vector["content"]))
    assert open_envelope(envelope, link_key, vector["passphrase"]) == expected
    assert open_in_slices(envelope, link_key, ones(), vector["passphrase"]) == expected


# -- negative vectors ----------------------------------------------------------------------


@pytest.mark.parametrize("vector", NEGATIVE, ids=[vector["name"] for vector in NEGATIVE])
def test_invalid_vector_is_refused(vector: dict[str, Any]) -> None:
    envelope = bytes.fromhex(vector["envelope"])
    link_key = bytes.fromhex(vector["link_key"])
    expected = ERRORS[vector["error"]]
    with pytest.raises(DecryptionFailed) as whole:
        open_envelope(envelope, link_key, vector["passphrase"])
    assert type(whole.value) is expected
    with pytest.raises(DecryptionFailed) as streamed:
        open_in_slices(envelope, link_key, ones(), vector["passphrase"])
    assert type(streamed.value) is expected


def test_failure_messages_do_not_say_which_check_failed() -> None:
    messages = set()
    for vector in NEGATIVE:
        with pytest.raises(DecryptionFailed) as caught:
            open_envelope(
                bytes.fromhex(vector["envelope"]),
                bytes.fromhex(vector["link_key"]),
                vector["passphrase"],
            )
        messages.add((type(caught.value), str(caught.value)))
        assert caught.value.__cause__ is None
        assert caught.value.__suppress_context__ or caught.value.__context__ is None
    assert len(messages) == len(ERRORS)


@pytest.mark.parametrize(
    ("build", "positive_file", "negative_file"),
    [
        ("build", "envelope.json", "envelope_invalid.json"),
        ("build_device", "envelope_device.json", "envelope_device_invalid.json"),
    ],
)
def test_vector_files_are_up_to_date(build: str, positive_file: str, negative_file: str) -> None:
    spec = importlib.util.spec_from_file_location(
        "generate_envelope_vectors", VECTORS / "generate_envelope_vectors.py"
    )
    assert spec is not None
    assert spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    positive, negative = getattr(generator, build)()
    assert (VECTORS / positive_file).read_text("utf-8") == positive
    assert (VECTORS / negative_file).read_text("utf-8") == negative


def test_vectors_cover_what_the_spec_promises() -> None:
    names = {vector["name"] for vector in POSITIVE}
    assert {"text", "text-passphrase-argon2id", "multi-chunk", "empty", "file-unicode-name"} <= (
        names
    )
    reasons = {vector["name"] for vector in NEGATIVE}
    assert {
        "tampered-header-salt",
        "tampered-chunk",
        "truncated-last-chunk-dropped",
        "truncated-mid-chunk",
        "chunks-swapped",
        "bytes-appended",
        "wrong-link-key",
        "wrong-passphrase",
        "unsupported-version",
    } <= reasons


# -- round trips ---------------------------------------------------------------------------

_unicode = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
metadata_strategy = st.builds(
    lambda kind, name, media_type, content: (
        Metadata(kind=kind, size=len(content), name=name, media_type=media_type),
        content,
    ),
    st.sampled_from(["text", "file"]),
    st.none() | _unicode,
    st.none() | _unicode,
    # Hypothesis favours tiny binaries; mix in long ones so content spans several chunks.
    st.binary(max_size=600)
    | st.builds(
        lambda size, seed: random.Random(seed).randbytes(size),
        st.integers(min_value=0, max_value=20_000),
        st.integers(min_value=0, max_value=2**32),
    ),
)
slice_sizes = st.lists(st.integers(min_value=1, max_value=3000), min_size=1, max_size=20)


def cycle(sizes: list[int]) -> Iterator[int]:
    while True:
        yield from sizes


@settings(max_examples=150, deadline=None)
@given(
    metadata_and_content=metadata_strategy,
    chunk_size_log2=st.integers(min_value=10, max_value=13),
    update_sizes=slice_sizes,
    feed_sizes=slice_sizes,
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_round_trip_in_arbitrary_slices(
    metadata_and_content: tuple[Metadata, bytes],
    chunk_size_log2: int,
    update_sizes: list[int],
    feed_sizes: list[int],
    seed: int,
) -> None:
    metadata, content = metadata_and_content
    whole = seal(
        content,
        metadata,
        KEY,
        random_bytes=seeded_random(seed),
        chunk_size_log2=chunk_size_log2,
    )
    assert len(whole) == sealed_size(metadata, chunk_size_log2=chunk_size_log2)

    sealer = Sealer(
        KEY, metadata, random_bytes=seeded_random(seed), chunk_size_log2=chunk_size_log2
    )
    streamed = bytearray()
    offset = 0
    sizes = cycle(update_sizes)
    while offset < len(content):
        size = next(sizes)
        streamed += sealer.update(content[offset : offset + size])
        offset += size
    streamed += sealer.finalize()
    assert bytes(streamed) == whole

    assert open_in_slices(whole, KEY, cycle(feed_sizes)) == (metadata, content)


@settings(max_examples=25, deadline=None)
@given(
    passphrase=st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=20),
    content=st.binary(max_size=2000),
)
def test_round_trip_with_passphrase(passphrase: str, content: bytes) -> None:
    metadata = Metadata(kind="text", size=len(content))
    envelope = seal(
        content,
        metadata,
        KEY,
        random_bytes=seeded_random(),
        passphrase=passphrase,
        argon2=CHEAP_ARGON2,
        chunk_size_log2=10,
    )
    assert len(envelope) == sealed_size(metadata, has_passphrase=True, chunk_size_log2=10)
    assert open_envelope(envelope, KEY, passphrase) == (metadata, content)
    with pytest.raises(DecryptionFailed):
        open_envelope(envelope, KEY, passphrase + "x")


@pytest.mark.parametrize("log2", [10, 16, 24])
@pytest.mark.parametrize("size", [0, 1, 467, 468, 469, 1000, 5000, 70_000, 2**20, 2**32])
@pytest.mark.parametrize("has_passphrase", [False, True])
def test_sealed_size_formula(log2: int, size: int, has_passphrase: bool) -> None:
    metadata = Metadata(kind="file", size=size, name="f")
    meta_length = len(b'{"kind":"file","name":"f","size":%d}' % size)
    plaintext = padded_size(4 + meta_length + size)
    chunks = -(-plaintext // 2**log2)
    header = HEADER_BYTES_WITH_PASSPHRASE if has_passphrase else HEADER_BYTES_WITHOUT_PASSPHRASE
    expected = header + plaintext + TAG_BYTES * chunks
    assert sealed_size(metadata, has_passphrase=has_passphrase, chunk_size_log2=log2) == expected


def test_sealed_size_refuses_more_than_2_to_the_32_chunks() -> None:
    largest = 2**42 - 4 - len(b'{"kind":"file","size":4398046511104}')
    assert sealed_size(Metadata(kind="file", size=largest), chunk_size_log2=10) > 2**42
    with pytest.raises(ValueError, match="too large"):
        sealed_size(Metadata(kind="file", size=largest + 1), chunk_size_log2=10)


@pytest.mark.parametrize("size", [0, 1, 467, 468, 469, 1000, 5000, 70_000])
def test_sealed_size_matches_seal(size: int) -> None:
    metadata = Metadata(kind="file", size=size, name="ä.bin", media_type="a/b")
    for log2 in (10, 16):
        envelope = seal(
            bytes(size), metadata, KEY, random_bytes=seeded_random(), chunk_size_log2=log2
        )
        assert len(envelope) == sealed_size(metadata, chunk_size_log2=log2)


def test_sizes_are_bucketed() -> None:
    sizes = {sealed_size(Metadata(kind="text", size=size)) for size in range(0, 400)} | {
        sealed_size(Metadata(kind="text", size=size)) for size in range(20_000, 21_000)
    }
    assert len(sizes) == 3  # 512, then two Padmé buckets around 20 KB


def test_metadata_json_is_compact_ordered_and_raw() -> None:
    metadata = Metadata(kind="file", size=3, name='é "x"', media_type="text/plain")
    record = envelope_module._encode_metadata(metadata)
    assert record == '{"kind":"file","name":"é \\"x\\"","size":3,"type":"text/plain"}'.encode()
    assert envelope_module._encode_metadata(Metadata(kind="text", size=0)) == (
        b'{"kind":"text","size":0}'
    )


def test_decoder_accepts_any_key_order_and_whitespace() -> None:
    assert envelope_module._decode_metadata(
        b' { "type" : "a/b" , "size" : 2, "name": "\\u00e9", "kind": "file" } '
    ) == Metadata(kind="file", size=2, name="é", media_type="a/b")


# -- streaming behaviour -------------------------------------------------------------------


def test_opener_holds_back_exactly_one_chunk() -> None:
    content = bytes(range(256)) * 20
    metadata = Metadata(kind="file", size=len(content))
    envelope = seal(content, metadata, KEY, random_bytes=seeded_random(), chunk_size_log2=10)
    header_size, sealed_chunk = HEADER_BYTES_WITHOUT_PASSPHRASE, 1024 + TAG_BYTES
    record_size = 4 + len(b'{"kind":"file","size":5120}')

    opener = Opener(KEY)
    assert opener.feed(envelope[: header_size + sealed_chunk]) == b""
    assert opener.metadata is None  # chunk 0 might still be the last one
    first = opener.feed(envelope[header_size + sealed_chunk : header_size + sealed_chunk + 1])
    assert opener.metadata == metadata
    assert first == content[: 1024 - record_size]
    rest = opener.feed(envelope[header_size + sealed_chunk + 1 :])
    assert first + rest + opener.finish() == content


def test_sealer_emits_chunks_as_soon_as_they_are_full() -> None:
    content = bytes(5000)
    sealer = Sealer(
        KEY,
        Metadata(kind="text", size=len(content)),
        random_bytes=seeded_random(),
        chunk_size_log2=10,
    )
    # 4 + 24 bytes of metadata record + 1000 of content fill chunk 0 (and a bit of 1).
    first = sealer.update(content[:1000])
    assert len(first) == HEADER_BYTES_WITHOUT_PASSPHRASE + 1024 + TAG_BYTES
    assert sealer.update(content[1000:2000]) == b""
    assert len(sealer.update(content[2000:])) == 3 * (1024 + TAG_BYTES)
    # 5028 bytes pad to 5120: the rest is padding and the flagged last chunk.
    chunks = list(sealer.finalize_iter())
    assert [len(chunk) for chunk in chunks] == [1024 + TAG_BYTES]


def test_first_output_starts_with_the_header() -> None:
    sealer = Sealer(KEY, Metadata(kind="text", size=1), random_bytes=seeded_random())
    first = sealer.update(b"")
    header = parse_header(first)
    assert header is not None
    assert first == header.raw
    assert sealer.update(b"x") == b""
    assert len(first) + len(sealer.finalize()) == sealer.size


def test_finalize_alone_emits_the_header_too() -> None:
    sealer = Sealer(KEY, Metadata(kind="text", size=0), random_bytes=seeded_random())
    envelope = sealer.finalize()
    assert open_envelope(envelope, KEY) == (Metadata(kind="text", size=0), b"")


def test_streaming_uses_constant_memory() -> None:
    piece_size, pieces, log2 = 16 * 1024, 256, 16  # 4 MiB through both ends
    metadata = Metadata(kind="file", size=piece_size * pieces)
    sealer = Sealer(KEY, metadata, random_bytes=seeded_random(), chunk_size_log2=log2)
    opener = Opener(KEY)
    piece = bytes(range(256)) * (piece_size // 256)
    received = 0
    tracemalloc.start()
    try:
        for _ in range(pieces):
            received += len(opener.feed(sealer.update(piece)))
        for sealed in sealer.finalize_iter():
            received += len(opener.feed(sealed))
        received += len(opener.finish())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == metadata.size
    assert peak < 8 * 2**log2  # a few chunks, far below the 4 MiB that went through


# -- passphrases ---------------------------------------------------------------------------


def _locked_envelope(content: bytes = b"secret") -> bytes:
    return seal(
        content,
        Metadata(kind="text", size=len(content)),
        KEY,
        random_bytes=seeded_random(),
        passphrase="hunter2",
        argon2=CHEAP_ARGON2,
    )


def test_passphrase_required_when_missing() -> None:
    envelope = _locked_envelope()
    with pytest.raises(PassphraseRequired):
        open_envelope(envelope, KEY)
    assert not issubclass(PassphraseRequired, DecryptionFailed)
    assert issubclass(PassphraseRequired, CryptoError)


def test_passphrase_required_leaves_the_opener_usable_for_inspection() -> None:
    envelope = _locked_envelope()
    opener = Opener(KEY)
    with pytest.raises(PassphraseRequired):
        opener.feed(envelope)
    assert opener.header is not None
    assert opener.header.has_passphrase
    with pytest.raises(PassphraseRequired):
        opener.finish()
    # The recipe for callers: peek at the header, ask, then open with the passphrase.
    header = parse_header(envelope[:HEADER_BYTES_WITH_PASSPHRASE])
    assert header is not None
    assert header.has_passphrase
    assert open_envelope(envelope, KEY, "hunter2")[1] == b"secret"


def test_passphrase_is_nfc_normalised() -> None:
    decomposed, composed = "Cafe\u0301", "Caf\u00e9"
    envelope = seal(
        b"x",
        Metadata(kind="text", size=1),
        KEY,
        random_bytes=seeded_random(),
        passphrase=decomposed,
        argon2=CHEAP_ARGON2,
    )
    assert open_envelope(envelope, KEY, composed)[1] == b"x"


def test_passphrase_given_for_an_unlocked_envelope_is_ignored() -> None:
    envelope = seal(b"x", Metadata(kind="text", size=1), KEY, random_bytes=seeded_random())
    assert open_envelope(envelope, KEY, "anything")[1] == b"x"


def test_unencodable_passphrase_fails_closed() -> None:
    with pytest.raises(DecryptionFailed):
        open_envelope(_locked_envelope(), KEY, "\ud800")


# -- tampering, property-based ----------------------------------------------------------------


_tamper_envelope = seal(
    bytes(range(256)) * 12,
    Metadata(kind="file", size=3072, name="t"),
    KEY,
    random_bytes=seeded_random(),
    chunk_size_log2=10,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_bit_flip_is_refused(position: int, bit: int) -> None:
    position %= len(_tamper_envelope)
    tampered = bytearray(_tamper_envelope)
    tampered[position] ^= 1 << bit
    # Flipping the kdf byte to 1 (or 2) makes a well-formed locked (or device-bound) header
    # out of chunk bytes: the opener then (harmlessly) asks for a passphrase (or a device)
    # that cannot help.
    with pytest.raises((DecryptionFailed, PassphraseRequired, DeviceRequired)):
        open_envelope(bytes(tampered), KEY)


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(min_value=0), extra=st.binary(min_size=1, max_size=2000))
def test_any_truncation_or_extension_is_refused(cut: int, extra: bytes) -> None:
    cut %= len(_tamper_envelope)
    with pytest.raises(DecryptionFailed):
        open_envelope(_tamper_envelope[:cut], KEY)
    with pytest.raises(DecryptionFailed):
        open_envelope(_tamper_envelope + extra, KEY)


@settings(max_examples=200, deadline=None)
@given(start=st.integers(min_value=0), length=st.integers(min_value=1, max_value=2000))
def test_any_removed_range_is_refused(start: int, length: int) -> None:
    start %= len(_tamper_envelope)
    with pytest.raises(DecryptionFailed):
        open_envelope(_tamper_envelope[:start] + _tamper_envelope[start + length :], KEY)


def test_opener_refuses_a_chunk_counter_that_would_wrap(monkeypatch: pytest.MonkeyPatch) -> None:
    # 2**32 chunks cannot be tested for real; lower the bound instead (read at run time).
    assert len(_tamper_envelope) > HEADER_BYTES_WITHOUT_PASSPHRASE + 3 * (1024 + TAG_BYTES)
    monkeypatch.setattr(envelope_module, "MAX_CHUNKS", 3)
    with pytest.raises(DecryptionFailed):
        open_envelope(_tamper_envelope, KEY)
    monkeypatch.setattr(envelope_module, "MAX_CHUNKS", 4)
    assert open_envelope(_tamper_envelope, KEY)[1] == bytes(range(256)) * 12


def test_no_content_is_released_from_a_forged_chunk() -> None:
    tampered = bytearray(_tamper_envelope)
    tampered[HEADER_BYTES_WITHOUT_PASSPHRASE + 1040 + 5] ^= 1  # inside chunk 1
    opener = Opener(KEY)
    released = opener.feed(bytes(tampered[: HEADER_BYTES_WITHOUT_PASSPHRASE + 1040 + 1]))
    assert released  # chunk 0 is genuine
    with pytest.raises(DecryptionFailed):
        opener.feed(bytes(tampered[HEADER_BYTES_WITHOUT_PASSPHRASE + 1040 + 1 :]))


# -- misuse --------------------------------------------------------------------------------


def test_failed_opener_stays_failed() -> None:
    opener = Opener(KEY)
    with pytest.raises(DecryptionFailed):
        opener.feed(b"NOPE")
    with pytest.raises(DecryptionFailed):
        opener.feed(b"")
    with pytest.raises(DecryptionFailed):
        opener.finish()


def test_finished_opener_takes_no_more_bytes() -> None:
    envelope = seal(b"", Metadata(kind="text", size=0), KEY, random_bytes=seeded_random())
    opener = Opener(KEY)
    opener.feed(envelope)
    opener.finish()
    with pytest.raises(ValueError, match="finished"):
        opener.feed(b"\x00")


def test_sealer_refuses_more_or_less_content_than_announced() -> None:
    def sealer() -> Sealer:
        return Sealer(KEY, Metadata(kind="text", size=3), random_bytes=seeded_random())

    too_much = sealer()
    too_much.update(b"ab")
    with pytest.raises(ValueError, match=r"metadata\.size"):
        too_much.update(b"cd")
    too_little = sealer()
    too_little.update(b"ab")
    with pytest.raises(ValueError, match=r"metadata\.size"):
        too_little.finalize()
    with pytest.raises(ValueError, match=r"metadata\.size"):
        seal(b"abcd", Metadata(kind="text", size=3), KEY, random_bytes=seeded_random())
    done = sealer()
    done.update(b"abc")
    done.finalize()
    with pytest.raises(ValueError, match="finalized"):
        done.finalize()
    with pytest.raises(ValueError, match="finalized"):
        done.update(b"")


@pytest.mark.parametrize(
    "arguments",
    [
        {"link_key": bytes(31)},
        {"link_key": bytes(33)},
        {"chunk_size_log2": 9},
        {"chunk_size_log2": 25},
        {"passphrase": ""},
        {"metadata": Metadata(kind="file", size=0, name="n" * 5000)},
        {"random_bytes": lambda size: bytes(size - 1)},
    ],
    ids=["short-key", "long-key", "chunk-9", "chunk-25", "empty-pass", "meta", "random"],
)
def test_sealer_refuses_bad_arguments(arguments: dict[str, Any]) -> None:
    options: dict[str, Any] = {
        "link_key": KEY,
        "metadata": Metadata(kind="text", size=0),
        "random_bytes": seeded_random(),
        **arguments,
    }
    link_key, metadata = options.pop("link_key"), options.pop("metadata")
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        Sealer(link_key, metadata, **options)


def test_sealer_draws_the_salt_then_the_argon2_salt() -> None:
    drawn: list[int] = []

    def recording(size: int) -> bytes:
        drawn.append(size)
        return bytes([len(drawn)]) * size

    sealer = Sealer(
        KEY,
        Metadata(kind="text", size=0),
        random_bytes=recording,
        passphrase="p",
        argon2=CHEAP_ARGON2,
    )
    header = parse_header(sealer.finalize())
    assert drawn == [32, 16]
    assert header is not None
    assert header.salt == bytes([1]) * 32
    assert header.argon2_salt == bytes([2]) * 16


def test_opener_refuses_a_bad_key_length() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Opener(bytes(16))


@pytest.mark.parametrize(
    "arguments",
    [
        {"kind": "image", "size": 0},
        {"kind": "text", "size": -1},
        {"kind": "text", "size": True},
        {"kind": "file", "size": 0, "name": "\udc00"},
        {"kind": "file", "size": 0, "media_type": 3},
    ],
)
def test_metadata_is_validated(arguments: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is not the point
        Metadata(**arguments)


@pytest.mark.parametrize(
    "arguments",
    [
        {"memory_kib": 7, "lanes": 1},
        {"memory_kib": 31, "lanes": 4},
        {"memory_kib": 2**20 + 1},
        {"iterations": 0},
        {"iterations": 17},
        {"lanes": 0},
        {"lanes": 17, "memory_kib": 1024},
    ],
)
def test_argon2_params_are_bounded(arguments: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="Argon2"):
        Argon2Params(**arguments)


def test_default_argon2_is_rfc9106_second_recommendation() -> None:
    assert Argon2Params() == Argon2Params(memory_kib=65536, iterations=3, lanes=4)


# -- header parsing ------------------------------------------------------------------------


def test_parse_header_waits_for_enough_bytes() -> None:
    for vector in POSITIVE:
        envelope = bytes.fromhex(vector["envelope"])
        header = parse_header(envelope)
        assert isinstance(header, Header)
        for cut in range(len(header.raw)):
            assert parse_header(envelope[:cut]) is None
        assert parse_header(header.raw) == header


def test_parse_header_fails_as_soon_as_a_byte_is_wrong() -> None:
    with pytest.raises(DecryptionFailed):
        parse_header(b"AX")
    with pytest.raises(UnsupportedEnvelope):
        parse_header(b"ATPS\x02")
    with pytest.raises(UnsupportedEnvelope):
        parse_header(b"ATPS\x01\x00")
    with pytest.raises(DecryptionFailed):
        parse_header(b"ATPS\x01\x01\x09")
    with pytest.raises(UnsupportedEnvelope):
        parse_header(b"ATPS\x01\x01\x10\x04")  # flags 1 and 2 are known, 4 is not


def test_key_material_is_not_in_reprs() -> None:
    keys = derive_envelope_keys(KEY, bytes(32))
    assert keys.key.hex() not in repr(keys)
    assert repr(keys.key) not in repr(keys)
