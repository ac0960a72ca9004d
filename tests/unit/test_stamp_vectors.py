"""tests/vectors/stamps.json against atopos.crypto.stamps, pow and access_proof (the browser
tests run the same file against the browser's stamp code): each valid stamp parses to its
fields and back to its one spelling, with its stamp id, its proof-of-work hashes and its
access proof; each invalid spelling is refused."""

from __future__ import annotations

import hashlib
import json
import re
import runpy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atopos.crypto import pow as proof_of_work
from atopos.crypto.access_proof import (
    STAMP_PROOF_LABEL,
    AccessSigner,
    stamp_proof_message,
    verify_access_proof,
    verify_stamp_proof,
)
from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.crypto.stamps import (
    MAX_STAMP_TIME,
    STAMP_FUTURE_SKEW,
    STAMP_PREFIX,
    InvalidStamp,
    Stamp,
    make_stamp,
    parse_stamp,
    stamp_id_for,
)
from atopos.crypto.tokens import ticket_id_for

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
STAMPS: dict[str, Any] = json.loads((VECTORS / "stamps.json").read_text(encoding="utf-8"))
_VALID = STAMPS["valid"]
_INVALID = STAMPS["invalid"]


@pytest.mark.parametrize("vector", _VALID, ids=[v["name"] for v in _VALID])
def test_a_valid_stamp_parses_to_its_fields_and_back(vector: dict[str, Any]) -> None:
    fields = Stamp(bytes.fromhex(vector["secret_id"]), vector["t"], bytes.fromhex(vector["salt"]))
    assert parse_stamp(vector["stamp"]) == fields
    assert make_stamp(fields.secret_id, fields.t, fields.salt) == vector["stamp"]
    assert stamp_id_for(vector["stamp"]).hex() == vector["stamp_id"]


@pytest.mark.parametrize("vector", _VALID, ids=[v["name"] for v in _VALID])
def test_the_work_over_a_stamp(vector: dict[str, Any]) -> None:
    stamp = vector["stamp"].encode("ascii")
    bits = STAMPS["bits"]
    for entry in vector["work"]:
        digest = hashlib.sha256(b"%s:%d" % (stamp, entry["nonce"])).digest()
        assert digest.hex() == entry["sha256"]
        assert proof_of_work.leading_zero_bits(digest) == entry["leading_zero_bits"]
        assert proof_of_work.verify(stamp, entry["nonce"], bits) is (
            entry["leading_zero_bits"] >= bits
        )
    assert proof_of_work.solve(stamp, bits) == vector["first_nonce"]


@pytest.mark.parametrize("vector", _VALID, ids=[v["name"] for v in _VALID])
def test_the_access_proof_over_a_stamp(vector: dict[str, Any]) -> None:
    key = STAMPS["access_key"]
    signer = AccessSigner(bytes.fromhex(key["link_key"]))
    assert b64url_encode(signer.public_key) == key["access_key"]
    secret_id = bytes.fromhex(vector["secret_id"])
    assert STAMPS["proof_label"].encode("ascii") + b"\x00" == STAMP_PROOF_LABEL
    message = stamp_proof_message(secret_id, vector["stamp"])
    assert message.hex() == vector["access_proof_message"]
    proof = b64url_encode(signer.sign_stamp_proof(secret_id, vector["stamp"]))
    assert proof == vector["access_proof"]
    assert verify_stamp_proof(signer.public_key, secret_id, vector["stamp"], vector["access_proof"])


@pytest.mark.parametrize("vector", _VALID, ids=[v["name"] for v in _VALID])
def test_a_proof_over_a_stamp_is_never_one_over_a_challenge(vector: dict[str, Any]) -> None:
    # A reader tricked into signing a stamp as a "challenge" gives nothing a stamp can use,
    # and a stamp's proof is no challenge's.
    key = STAMPS["access_key"]
    signer = AccessSigner(bytes.fromhex(key["link_key"]))
    secret_id = bytes.fromhex(vector["secret_id"])
    stamp = vector["stamp"]
    as_challenge = b64url_encode(signer.sign_proof(secret_id, stamp))
    assert as_challenge == vector["challenge_label_proof"]
    assert as_challenge != vector["access_proof"]
    assert not verify_stamp_proof(signer.public_key, secret_id, stamp, as_challenge)
    assert not verify_access_proof(signer.public_key, secret_id, stamp, vector["access_proof"])


@pytest.mark.parametrize("vector", _INVALID, ids=[v["reason"] for v in _INVALID])
def test_an_invalid_spelling_is_refused(vector: dict[str, Any]) -> None:
    with pytest.raises(InvalidStamp):
        parse_stamp(vector["stamp"])


def test_the_constants_are_the_files() -> None:
    assert STAMPS["prefix"] == STAMP_PREFIX
    assert STAMPS["future_skew"] == STAMP_FUTURE_SKEW
    assert MAX_STAMP_TIME == 10**12 - 1


def test_a_stamp_never_shares_an_id_with_a_challenge() -> None:
    # A challenge token is base64url only; a stamp always has dots: the preimages differ.
    stamp = _VALID[0]["stamp"]
    assert "." in stamp
    assert stamp_id_for(stamp) == ticket_id_for(stamp)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", stamp) is None


@pytest.mark.parametrize(
    ("secret_id", "t", "salt"),
    [
        (bytes(15), 0, bytes(16)),
        (bytes(16), 0, bytes(17)),
        (bytes(16), -1, bytes(16)),
        (bytes(16), 10**12, bytes(16)),
        (bytes(16), True, bytes(16)),
    ],
)
def test_make_stamp_refuses_what_a_stamp_cannot_carry(
    secret_id: bytes, t: int, salt: bytes
) -> None:
    with pytest.raises(ValueError, match="a s"):
        make_stamp(secret_id, t, salt)


@given(
    st.binary(min_size=16, max_size=16),
    st.integers(min_value=0, max_value=MAX_STAMP_TIME),
    st.binary(min_size=16, max_size=16),
)
def test_every_stamp_round_trips_through_its_one_spelling(
    secret_id: bytes, t: int, salt: bytes
) -> None:
    text = make_stamp(secret_id, t, salt)
    assert re.fullmatch(STAMPS["regex"].strip("^$"), text) is not None
    assert parse_stamp(text) == Stamp(secret_id, t, salt)
    assert b64url_decode(text.split(".")[1]) == secret_id


@given(st.text(max_size=80))
def test_parsing_any_text_gives_a_stamp_spelled_as_it_or_refuses(text: str) -> None:
    try:
        stamp = parse_stamp(text)
    except InvalidStamp:
        return
    assert make_stamp(stamp.secret_id, stamp.t, stamp.salt) == text


def test_the_file_is_what_its_generator_writes() -> None:
    generator = runpy.run_path(str(VECTORS / "generate_stamp_vectors.py"))
    assert generator["build"]() == STAMPS


_STAMP_CHARACTERS = "s1.AQgwBhx+/=_-09 \n\u0661"


@given(
    st.sampled_from([v["stamp"] for v in _VALID]),
    st.integers(min_value=0, max_value=60),
    st.integers(min_value=0, max_value=2),
    st.text(alphabet=_STAMP_CHARACTERS, max_size=2),
)
def test_a_near_miss_of_a_stamp_is_refused_unless_it_is_another_canonical_stamp(
    stamp: str, position: int, removed: int, inserted: str
) -> None:
    text = stamp[:position] + inserted + stamp[position + removed :]
    try:
        parsed = parse_stamp(text)
    except InvalidStamp:
        return
    assert make_stamp(parsed.secret_id, parsed.t, parsed.salt) == text
