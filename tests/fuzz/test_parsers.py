"""Every parser of untrusted bytes, fed arbitrary and near-valid input.

The property is the same everywhere: a parser either returns a well-formed value (which
round-trips to the same text or bytes where the format is canonical) or raises its one
documented, typed error. Anything else (an IndexError, a struct.error, a RecursionError,
a UnicodeError, a hang) is a bug: it would surface as a 500 on the server or a traceback
in the CLI. `make test` runs each for a few hundred examples; `make fuzz` for as long as
FUZZ_SECONDS allows (tests/fuzzing.py).
"""

from __future__ import annotations

import itertools
import json
import os
import string
import struct
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from atopos.client.duration import parse_duration
from atopos.client.links import (
    InvalidLink,
    ManageLink,
    ShareLink,
    parse_manage_link,
    parse_server_url,
    parse_share_link,
)
from atopos.client.recovery import InvalidPhrase, phrase_to_seed, seed_to_phrase
from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.crypto.device import (
    DEVICE_CODE_PREFIX,
    DeviceKeys,
    InvalidDeviceCode,
    is_valid_ed25519_public_key,
    is_valid_x25519_public_key,
    parse_device_code,
    verify_device_proof,
)
from atopos.crypto.envelope import (
    FLAG_DEVICE,
    FLAG_PASSPHRASE,
    HEADER_BYTES_MAX,
    MAGIC,
    Argon2Params,
    Header,
    Metadata,
    Opener,
    open_envelope,
    parse_header,
    seal,
)
from atopos.crypto.errors import (
    DecryptionFailed,
    DeviceRequired,
    PassphraseRequired,
    UnsupportedEnvelope,
)
from atopos.crypto.lock import MODE_KEY, lock_mode, lock_with_key, unlock
from atopos.crypto.tokens import InvalidToken, TokenKeys, ticket_id_for
from atopos.errors import InvalidInput, TooLarge
from atopos.server.bodies import read_json
from atopos.server.keyfile import NodeKeys, load_key_file
from atopos.server.secrets.schemas import RevealRequest, TicketRequest
from tests.fuzzing import fuzz_settings

pytestmark = pytest.mark.fuzz

KEY = bytes(range(32))
SECRET = bytes(range(16))
OTHER_SECRET = bytes(range(1, 17))
NOW = 1_800_000_000
CHEAP_ARGON2 = Argon2Params(memory_kib=8, iterations=1, lanes=1)
# What may leave Opener.feed/finish for bytes from a server or a file: nothing else.
OPEN_ERRORS = (DecryptionFailed, UnsupportedEnvelope, PassphraseRequired, DeviceRequired)
ALPHABET = string.ascii_letters + string.digits + "-_"
T = TypeVar("T")


def _fixed_random(seed: int) -> Callable[[int], bytes]:
    """Deterministic `random_bytes` (a 64-bit LCG): examples must be reproducible."""
    state = seed % 2**64

    def draw(size: int) -> bytes:
        nonlocal state
        out = b""
        while len(out) < size:
            state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
            out += state.to_bytes(8, "big")
        return out[:size]

    return draw


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Drive a coroutine that never suspends (its awaits all complete at once) without an
    event loop: cheaper per example than asyncio.run."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise AssertionError("the coroutine suspended")


# -- strategies ----------------------------------------------------------------------------


@st.composite
def header_like(draw: st.DrawFn) -> bytes:
    """Bytes that get past the magic: plausible version, suite, chunk size and flags, then
    Argon2 and device fields of any value, then anything."""
    version = draw(st.sampled_from([1, 1, 1, 0, 2, 255]))
    suite = draw(st.sampled_from([1, 1, 1, 0, 2]))
    chunk = draw(st.integers(min_value=8, max_value=26))
    flags = draw(st.sampled_from([0, FLAG_PASSPHRASE, FLAG_DEVICE, 3, 4, 128]))
    salt = draw(st.binary(min_size=32, max_size=32))
    argon2 = struct.pack(
        ">III",
        draw(st.integers(min_value=0, max_value=2**32 - 1)),
        draw(st.integers(min_value=0, max_value=20)),
        draw(st.integers(min_value=0, max_value=20)),
    ) + draw(st.binary(min_size=16, max_size=16))
    device = draw(st.binary(min_size=80, max_size=80))
    tail = draw(st.binary(max_size=300))
    data = MAGIC + bytes([version, suite, chunk, flags]) + salt + argon2 + device + tail
    return data[: draw(st.integers(min_value=0, max_value=len(data)))]


untrusted_bytes = st.one_of(st.binary(max_size=600), header_like())


@st.composite
def sealed(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A genuine envelope (possibly many small chunks) and its content."""
    content = draw(st.binary(max_size=3000))
    envelope = seal(
        content,
        Metadata("file", len(content), name=draw(st.none() | st.text(max_size=20))),
        KEY,
        random_bytes=_fixed_random(draw(st.integers(0, 2**32))),
        chunk_size_log2=draw(st.sampled_from([10, 11, 16])),
    )
    return envelope, content


def _open_in_pieces(opener: Opener, pieces: list[bytes]) -> bytes:
    content = b"".join(opener.feed(piece) for piece in pieces)
    return content + opener.finish()


def _slices(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


# -- envelope ------------------------------------------------------------------------------


@fuzz_settings(400)
@given(untrusted_bytes)
def test_parse_header_returns_a_header_none_or_a_typed_error(data: bytes) -> None:
    try:
        header = parse_header(data)
    except (DecryptionFailed, UnsupportedEnvelope):
        return
    if header is None:
        assert len(data) < HEADER_BYTES_MAX
        return
    assert isinstance(header, Header)
    assert data.startswith(header.raw)
    # Bytes after the header never change what the header says.
    assert parse_header(data + b"\xff" * 7) == header
    assert header.has_passphrase == bool(data[7] & FLAG_PASSPHRASE)
    assert header.is_device_bound == bool(data[7] & FLAG_DEVICE)


@fuzz_settings(150)
@given(sealed(), st.integers(min_value=0, max_value=200))
def test_every_prefix_of_a_valid_header_is_undecided(envelope: tuple[bytes, bytes], n: int) -> None:
    data, _ = envelope
    header = parse_header(data)
    assert header is not None
    cut = n % len(header.raw)
    assert parse_header(data[:cut]) is None


@fuzz_settings(400)
@given(untrusted_bytes, st.lists(st.integers(min_value=0), max_size=6))
def test_opener_feed_raises_only_typed_errors(data: bytes, cuts: list[int]) -> None:
    opener = Opener(KEY)
    with pytest.raises(OPEN_ERRORS) as caught:
        _open_in_pieces(opener, _slices(data, cuts))
    if type(caught.value) in (DecryptionFailed, UnsupportedEnvelope):
        # Failure is final: the opener refuses everything afterwards.
        with pytest.raises(DecryptionFailed):
            opener.feed(b"")


@fuzz_settings(100)
@given(header_like(), st.binary(max_size=400))
def test_opener_with_a_passphrase_and_a_device_raises_only_typed_errors(
    head: bytes, rest: bytes
) -> None:
    # Cheap Argon2 costs only: the parser's own bounds cap what a header can demand
    # (1 GiB, 16 passes), and that cap is what the reader accepts to spend.
    if len(head) >= 52:
        head = head[:40] + struct.pack(">III", 8, 1, 1) + head[52:]
    device = DeviceKeys.from_seed(bytes(32))
    opener = Opener(KEY, "passphrase", device=device)
    with pytest.raises((DecryptionFailed, UnsupportedEnvelope)):
        _open_in_pieces(opener, [head, rest])


@fuzz_settings(300)
@given(
    sealed(),
    st.lists(
        st.tuples(
            st.sampled_from(["flip", "cut", "append", "swap", "duplicate"]),
            st.integers(min_value=0),
            st.integers(min_value=0, max_value=255),
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_a_changed_envelope_never_opens_to_other_content(
    envelope: tuple[bytes, bytes], edits: list[tuple[str, int, int]]
) -> None:
    original, content = envelope
    data = bytearray(original)
    for kind, position, value in edits:
        at = position % (len(data) + 1)
        if kind == "flip" and data:
            data[at % len(data)] ^= 1 << (value % 8)
        elif kind == "cut":
            del data[at:]
        elif kind == "append":
            data += bytes([value]) * (1 + value % 17)
        elif kind == "swap" and len(data) > 2048:
            # Two 1 KiB-aligned blocks swapped: chunk reordering for 1 KiB chunks.
            a, b = (at // 1024) * 1024 % (len(data) - 1024), (value * 1024) % (len(data) - 1024)
            block_a, block_b = bytes(data[a : a + 1024]), bytes(data[b : b + 1024])
            data[a : a + 1024], data[b : b + 1024] = block_b, block_a
        elif kind == "duplicate":
            data += data[at : at + 1040]
    try:
        _, opened = open_envelope(bytes(data), KEY)
    except OPEN_ERRORS:
        return
    assert bytes(data) == original
    assert opened == content


# -- challenges and tickets ----------------------------------------------------------------

token_text = st.one_of(
    st.text(max_size=120),
    st.text(alphabet=ALPHABET, min_size=60, max_size=110),
    st.integers(min_value=60, max_value=110).flatmap(
        lambda n: st.text(alphabet=ALPHABET, min_size=n, max_size=n)
    ),
)


@fuzz_settings(500)
@given(token_text, st.integers(min_value=0, max_value=2**64 - 1))
def test_arbitrary_tokens_are_invalid_tokens(text: str, now: int) -> None:
    keys = TokenKeys(b"k" * 32, previous=b"p" * 32)
    with pytest.raises(InvalidToken):
        keys.open_ticket(text, SECRET, now)
    with pytest.raises(InvalidToken):
        keys.open_challenge(text, SECRET, now)


@fuzz_settings(300)
@given(
    st.binary(min_size=16, max_size=16),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.integers(min_value=0, max_value=255),
    st.binary(min_size=8, max_size=8),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.integers(min_value=0),
    st.sampled_from(ALPHABET),
)
def test_genuine_tokens_open_exactly_where_they_should(
    secret_id: bytes,
    expires_at: int,
    bits: int,
    salt: bytes,
    now: int,
    position: int,
    replacement: str,
) -> None:
    keys = TokenKeys(b"k" * 32)
    challenge = keys.issue_challenge(secret_id, expires_at, bits, salt)
    remember_until = min(expires_at + 120, 2**64 - 1)
    ticket = keys.issue_ticket(secret_id, ticket_id_for(challenge), expires_at, remember_until)
    if now < expires_at:
        opened = keys.open_challenge(challenge, secret_id, now)
        assert (opened.secret_id, opened.expires_at, opened.bits) == (secret_id, expires_at, bits)
        opened_ticket = keys.open_ticket(ticket, secret_id, now)
        assert opened_ticket.ticket_id == ticket_id_for(challenge)
        assert opened_ticket.remember_until == remember_until
    else:
        with pytest.raises(InvalidToken):
            keys.open_challenge(challenge, secret_id, now)
        with pytest.raises(InvalidToken):
            keys.open_ticket(ticket, secret_id, now)
    other = bytes(b ^ 0xFF for b in secret_id)
    for token in (challenge, ticket):
        with pytest.raises(InvalidToken):  # never for another secret
            (keys.open_ticket if token is ticket else keys.open_challenge)(token, other, 0)
        with pytest.raises(InvalidToken):  # never under another key
            TokenKeys(b"x" * 32).open_ticket(token, secret_id, 0)
    with pytest.raises(InvalidToken):  # a challenge is never a ticket, nor the reverse
        keys.open_ticket(challenge, secret_id, 0)
    with pytest.raises(InvalidToken):
        keys.open_challenge(ticket, secret_id, 0)
    at = position % len(ticket)
    forged = ticket[:at] + replacement + ticket[at + 1 :]
    if forged != ticket:
        with pytest.raises(InvalidToken):
            keys.open_ticket(forged, secret_id, 0)


# -- base64url, links, durations -----------------------------------------------------------


@fuzz_settings(500)
@given(st.one_of(st.text(max_size=80), st.text(alphabet=ALPHABET + "=+/ ", max_size=80)))
def test_base64url_decode_is_strict_and_canonical(text: str) -> None:
    try:
        raw = b64url_decode(text)
    except ValueError:
        return
    assert b64url_encode(raw) == text


@fuzz_settings(300)
@given(st.binary(max_size=100))
def test_base64url_round_trips(raw: bytes) -> None:
    assert b64url_decode(b64url_encode(raw)) == raw


@st.composite
def link_like(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https", "HTTPS", "ftp", "", "javascript"]))
    host = draw(
        st.sampled_from(["example.org", "127.0.0.1", "[::1]", "h:8080", "u:p@h", "", "h:0", "h:x"])
    )
    prefix = draw(st.sampled_from(["", "/atopos", "/a/b/", "//", "/s"]))
    marker = draw(st.sampled_from(["s", "m", "x", "s/s"]))
    secret_id = draw(
        st.one_of(
            st.binary(min_size=16, max_size=16).map(b64url_encode),
            st.text(alphabet=ALPHABET, max_size=24),
        )
    )
    fragment = draw(
        st.one_of(
            st.binary(min_size=32, max_size=32).map(b64url_encode),
            st.text(alphabet=ALPHABET + "=%", max_size=48),
        )
    )
    query = draw(st.sampled_from(["", "?a=1", "?"]))
    text = f"{scheme}://{host}{prefix}/{marker}/{secret_id}{query}#{fragment}"
    # And a few edits of any character anywhere.
    for position, char in draw(st.lists(st.tuples(st.integers(0), st.characters()), max_size=2)):
        at = position % (len(text) + 1)
        text = text[:at] + char + text[at + 1 :]
    return text


links = st.one_of(st.text(max_size=200), link_like())


@fuzz_settings(500)
@given(links)
def test_share_links_parse_to_a_canonical_link_or_invalid_link(text: str) -> None:
    try:
        link = parse_share_link(text)
    except InvalidLink:
        return
    assert isinstance(link, ShareLink)
    assert len(link.link_key) == 32
    assert len(b64url_decode(link.secret_id)) == 16
    assert parse_share_link(str(link)) == link


@fuzz_settings(500)
@given(links)
def test_manage_links_parse_to_a_canonical_link_or_invalid_link(text: str) -> None:
    try:
        link = parse_manage_link(text)
    except InvalidLink:
        return
    assert isinstance(link, ManageLink)
    assert len(b64url_decode(link.manage_token)) == 32
    assert parse_manage_link(str(link)) == link


@fuzz_settings(300)
@given(links)
def test_server_urls_normalise_or_are_invalid(text: str) -> None:
    try:
        server = parse_server_url(text)
    except InvalidLink:
        return
    assert parse_server_url(server) == server


@fuzz_settings(400)
@given(
    st.one_of(
        st.text(max_size=20),
        st.from_regex(r"\s*[0-9]{0,12}[smhdwy]?\s*", fullmatch=True),
    )
)
def test_durations_parse_to_positive_seconds_or_invalid_input(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except InvalidInput:
        return
    assert seconds > 0
    number, unit = text.strip()[:-1], text.strip()[-1]
    assert seconds == int(number) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]


# -- the server's JSON bodies ---------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def json_bodies(draw: st.DrawFn) -> bytes:
    """Raw bytes, arbitrary JSON, and objects with the right keys holding anything."""
    choice = draw(st.integers(min_value=0, max_value=3))
    if choice == 0:
        return draw(st.binary(max_size=200))
    if choice == 1:
        return json.dumps(draw(json_values)).encode()
    keys = draw(
        st.lists(
            st.sampled_from(["challenge", "nonce", "ticket", "device_proof", "extra"]),
            max_size=4,
            unique=True,
        )
    )
    body = {key: draw(json_values) for key in keys}
    if choice == 3:
        body = {
            key: draw(
                st.text(alphabet=ALPHABET, max_size=600)
                if key != "nonce"
                else st.integers(min_value=-2, max_value=2**65)
            )
            for key in keys
        }
    return json.dumps(body).encode()


def _request(body: bytes, content_length: str | None) -> object:
    from starlette.requests import Request

    headers = [] if content_length is None else [(b"content-length", content_length.encode())]
    pieces = [body[i : i + 64] for i in range(0, len(body), 64)] or [b""]

    async def receive() -> dict[str, object]:
        piece = pieces.pop(0) if pieces else b""
        return {"type": "http.request", "body": piece, "more_body": bool(pieces)}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    return Request(scope, receive)


@fuzz_settings(500)
@given(
    json_bodies(),
    st.sampled_from([TicketRequest, RevealRequest]),
    st.one_of(st.none(), st.just("auto"), st.text(max_size=8)),
)
def test_json_bodies_decode_to_a_valid_request_or_a_4xx(
    body: bytes, schema: type[TicketRequest] | type[RevealRequest], content_length: str | None
) -> None:
    declared = str(len(body)) if content_length == "auto" else content_length
    request = _request(body, declared)
    try:
        value = _run(read_json(request, schema, 4096))  # type: ignore[arg-type]
    except (InvalidInput, TooLarge):
        return
    if isinstance(value, TicketRequest):
        assert 0 <= value.nonce < 2**64
        assert 1 <= len(value.challenge) <= 512
        assert value.device_proof is None or 1 <= len(value.device_proof) <= 512
    else:
        assert 1 <= len(value.ticket) <= 512
    # What was accepted re-encodes to JSON the schema accepts again.
    assert msgspec.json.decode(msgspec.json.encode(value), type=schema) == value


# -- the node key file ---------------------------------------------------------------------


@st.composite
def key_files(draw: st.DrawFn) -> bytes:
    keys = draw(st.lists(st.binary(min_size=30, max_size=34), max_size=3))
    separator = draw(st.sampled_from([b"\n", b"\r\n", b" \n\n", b"\t"]))
    lines = [b64url_encode(key).encode() for key in keys]
    data = separator.join(lines) + draw(st.sampled_from([b"", b"\n", b"  "]))
    if draw(st.booleans()):
        data = draw(st.binary(max_size=200))
    return data


@fuzz_settings(300)
@given(key_files())
def test_key_files_load_or_fail_with_one_sentence(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.getbasetemp() / "fuzz.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    try:
        keys = load_key_file(path)
    except InvalidInput as error:
        refusal = error.message
    else:
        refusal = None
    finally:
        path.unlink()
    if refusal is not None:
        assert "\n" not in refusal
        return
    assert isinstance(keys, NodeKeys)
    assert len(keys.current) == 32
    assert keys.previous is None or len(keys.previous) == 32
    keys.token_keys()


# -- device codes, proofs, lock records, recovery phrases ----------------------------------


@st.composite
def device_codes(draw: st.DrawFn) -> str:
    code = DeviceKeys.from_seed(draw(st.binary(min_size=32, max_size=32))).public.code
    for position, char in draw(st.lists(st.tuples(st.integers(0), st.characters()), max_size=2)):
        at = position % (len(code) + 1)
        code = code[:at] + char + code[at + 1 :]
    return draw(st.sampled_from(["", " ", "\n"])) + code


@fuzz_settings(300)
@given(
    st.one_of(
        st.text(max_size=120),
        st.text(ALPHABET, max_size=100).map(lambda tail: DEVICE_CODE_PREFIX + tail),
        device_codes(),
    )
)
def test_device_codes_parse_to_usable_keys_or_invalid_device_code(text: str) -> None:
    try:
        public = parse_device_code(text)
    except InvalidDeviceCode as error:
        kind = error.kind
    else:
        kind = None
    if kind is not None:
        assert kind in {"prefix", "length", "encoding", "checksum", "keys"}
        return
    assert is_valid_ed25519_public_key(public.signing_key)
    assert is_valid_x25519_public_key(public.sealing_key)
    assert parse_device_code(public.code) == public


@fuzz_settings(300)
@given(
    st.binary(max_size=40),
    st.binary(min_size=16, max_size=16),
    st.text(max_size=100),  # lone surrogates included: still just False
    st.one_of(st.text(max_size=100), st.binary(min_size=64, max_size=64).map(b64url_encode)),
)
def test_device_proofs_verify_to_a_bool_and_never_raise(
    key: bytes, secret_id: bytes, challenge: str, proof: str
) -> None:
    assert isinstance(is_valid_ed25519_public_key(key), bool)
    assert isinstance(is_valid_x25519_public_key(key), bool)
    assert verify_device_proof(key, secret_id, challenge, proof) is False


@fuzz_settings(300)
@given(
    st.one_of(
        st.binary(max_size=120),
        st.binary(max_size=100).map(lambda tail: b"ATLK\x01" + bytes([MODE_KEY]) + tail),
        st.binary(max_size=100).map(lambda tail: b"ATLK\x01\x01" + tail),
    ),
    st.one_of(st.none(), st.binary(min_size=32, max_size=32)),
)
def test_lock_records_unlock_or_fail_closed(record: bytes, key: bytes | None) -> None:
    try:
        mode = lock_mode(record)
    except DecryptionFailed:
        mode = None
    try:
        unlock(record, purpose="fuzz", key=key)
    except (DecryptionFailed, PassphraseRequired):
        return
    # Only a plain (mode 0) record opens without a key or passphrase matching it.
    assert mode == 0


@fuzz_settings(100)
@given(st.binary(max_size=64), st.binary(min_size=32, max_size=32), st.integers(0, 2**32))
def test_lock_records_round_trip(secret: bytes, key: bytes, seed: int) -> None:
    record = lock_with_key(secret, key, purpose="p", random_bytes=_fixed_random(seed))
    assert unlock(record, purpose="p", key=key) == secret
    with pytest.raises(DecryptionFailed):
        unlock(record, purpose="q", key=key)


@st.composite
def phrases(draw: st.DrawFn) -> str:
    words = seed_to_phrase(draw(st.binary(min_size=32, max_size=32))).split()
    for position, word in draw(
        st.lists(st.tuples(st.integers(0, 23), st.sampled_from(["abandon", "zoo", "xyzzy", ""])))
    ):
        words[position] = word
    separator = draw(st.sampled_from([" ", "  ", "\n", "\t"]))
    text = separator.join(words)
    return text.upper() if draw(st.booleans()) else text


@fuzz_settings(200)
@given(st.one_of(st.text(max_size=200), phrases()))
def test_recovery_phrases_give_a_seed_or_invalid_phrase(text: str) -> None:
    try:
        seed = phrase_to_seed(text)
    except InvalidPhrase as error:
        refusal = error.message
    else:
        refusal = None
    if refusal is not None:
        assert "\n" not in refusal
        return
    assert len(seed) == 32
    assert phrase_to_seed(seed_to_phrase(seed)) == seed
