"""Device keys, device codes and device proofs against tests/vectors/device.json
(docs/protocol/device.md), plus properties of code parsing and proofs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atopos.client.device import InvalidDeviceCodeInput, parse_device_code_input
from atopos.client.recovery import InvalidPhrase, phrase_to_seed, seed_to_phrase
from atopos.crypto.base64url import b64url_encode
from atopos.crypto.device import (
    DEVICE_CODE_CHARS,
    DeviceKeys,
    DevicePublic,
    InvalidDeviceCode,
    device_code_checksum,
    device_proof_message,
    is_valid_ed25519_public_key,
    is_valid_x25519_public_key,
    parse_device_code,
    verify_device_proof,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
DOCUMENT: dict[str, Any] = json.loads((VECTORS / "device.json").read_text("utf-8"))
DEVICES: list[dict[str, str]] = DOCUMENT["devices"]
BY_NAME = {device["name"]: device for device in DEVICES}
PROOFS: list[dict[str, str]] = DOCUMENT["proofs"]
REFUSALS: list[dict[str, str]] = DOCUMENT["proof_refusals"]
INVALID_CODES: list[dict[str, str]] = DOCUMENT["invalid_codes"]
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

seeds = st.binary(min_size=32, max_size=32)


def keys_of(device: dict[str, str]) -> DeviceKeys:
    return DeviceKeys.from_seed(bytes.fromhex(device["seed"]))


def test_vector_file_is_up_to_date() -> None:
    spec = importlib.util.spec_from_file_location(
        "generate_device_vectors", VECTORS / "generate_device_vectors.py"
    )
    assert spec is not None
    assert spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert (VECTORS / "device.json").read_text("utf-8") == generator.build()


# -- keys and codes ------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES, ids=[device["name"] for device in DEVICES])
def test_keys_from_seed_match_the_vector(device: dict[str, str]) -> None:
    keys = keys_of(device)
    ed25519_private, x25519_private = keys.private_bytes()
    assert ed25519_private.hex() == device["ed25519_private"]
    assert x25519_private.hex() == device["x25519_private"]
    assert keys.public.signing_key.hex() == device["ed25519_public"]
    assert keys.public.sealing_key.hex() == device["x25519_public"]
    assert keys.sealing_key.hex() == device["x25519_public"]
    assert (
        device_code_checksum(keys.public.signing_key, keys.public.sealing_key).hex()
        == device["checksum"]
    )
    assert keys.public.code == device["device_code"]
    assert len(device["device_code"]) == DEVICE_CODE_CHARS


@pytest.mark.parametrize("device", DEVICES, ids=[device["name"] for device in DEVICES])
def test_keys_from_private_keys_alone_are_the_same_device(device: dict[str, str]) -> None:
    # A browser has key pairs, no seed: everything must work from the pairs.
    keys = DeviceKeys(
        bytes.fromhex(device["ed25519_private"]), bytes.fromhex(device["x25519_private"])
    )
    assert keys.public.code == device["device_code"]


@pytest.mark.parametrize("device", DEVICES, ids=[device["name"] for device in DEVICES])
def test_code_parses_back_to_the_public_keys(device: dict[str, str]) -> None:
    public = parse_device_code(device["device_code"])
    assert public.signing_key.hex() == device["ed25519_public"]
    assert public.sealing_key.hex() == device["x25519_public"]
    # White space around a pasted code is fine.
    assert parse_device_code(f"  {device['device_code']}\n") == public


@pytest.mark.parametrize("vector", INVALID_CODES, ids=[vector["name"] for vector in INVALID_CODES])
def test_invalid_codes_are_refused_with_one_sentence(vector: dict[str, str]) -> None:
    with pytest.raises(InvalidDeviceCode) as caught:
        parse_device_code(vector["code"])
    assert caught.value.kind == vector["error"]
    message = str(caught.value)
    assert message.endswith(".")
    assert ". " not in message
    assert "\n" not in message
    with pytest.raises(InvalidDeviceCodeInput, match=r"^The|^A "):
        parse_device_code_input(vector["code"])


def test_invalid_codes_cover_every_check() -> None:
    assert {vector["error"] for vector in INVALID_CODES} == {
        "prefix",
        "length",
        "encoding",
        "checksum",
        "keys",
    }


@settings(max_examples=200, deadline=None)
@given(seed=seeds, position=st.integers(min_value=5, max_value=95), data=st.data())
def test_any_changed_character_is_caught(seed: bytes, position: int, data: st.DataObject) -> None:
    code = DeviceKeys.from_seed(seed).public.code
    replacement = data.draw(st.sampled_from(ALPHABET.replace(code[position], "")))
    typo = code[:position] + replacement + code[position + 1 :]
    # The checksum misses a random change with odds 2**-32; none in these examples.
    with pytest.raises(InvalidDeviceCode):
        parse_device_code(typo)


@settings(max_examples=100, deadline=None)
@given(seed=seeds, position=st.integers(min_value=5, max_value=94))
def test_swapped_neighbours_are_caught(seed: bytes, position: int) -> None:
    code = DeviceKeys.from_seed(seed).public.code
    if code[position] == code[position + 1]:
        return
    swapped = code[:position] + code[position + 1] + code[position] + code[position + 2 :]
    with pytest.raises(InvalidDeviceCode):
        parse_device_code(swapped)


@settings(max_examples=50, deadline=None)
@given(seed=seeds)
def test_codes_round_trip(seed: bytes) -> None:
    public = DeviceKeys.from_seed(seed).public
    assert parse_device_code(public.code) == public
    assert public.code.startswith("atd1-")


@pytest.mark.parametrize(
    "vector",
    DOCUMENT["invalid_ed25519_public_keys"],
    ids=[vector["name"] for vector in DOCUMENT["invalid_ed25519_public_keys"]],
)
def test_invalid_ed25519_public_keys_are_refused(vector: dict[str, str]) -> None:
    assert not is_valid_ed25519_public_key(bytes.fromhex(vector["key"]))


@pytest.mark.parametrize(
    "vector",
    DOCUMENT["invalid_x25519_public_keys"],
    ids=[vector["name"] for vector in DOCUMENT["invalid_x25519_public_keys"]],
)
def test_invalid_x25519_public_keys_are_refused(vector: dict[str, str]) -> None:
    raw = bytes.fromhex(vector["key"])
    assert not is_valid_x25519_public_key(raw)
    with pytest.raises(ValueError, match="sealing key"):
        DevicePublic(bytes.fromhex(DEVICES[0]["ed25519_public"]), raw)


@settings(max_examples=50, deadline=None)
@given(seed=seeds)
def test_real_public_keys_are_valid(seed: bytes) -> None:
    public = DeviceKeys.from_seed(seed).public
    assert is_valid_ed25519_public_key(public.signing_key)
    assert is_valid_x25519_public_key(public.sealing_key)


def test_seed_must_be_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        DeviceKeys.from_seed(bytes(31))


def test_repr_shows_no_private_key() -> None:
    device = DEVICES[0]
    text = repr(keys_of(device))
    assert device["device_code"] in text
    for secret in ("seed", "ed25519_private", "x25519_private"):
        assert device[secret] not in text


# -- proofs --------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", PROOFS, ids=[vector["name"] for vector in PROOFS])
def test_proof_matches_the_vector(vector: dict[str, str]) -> None:
    keys = keys_of(BY_NAME[vector["device"]])
    secret_id = bytes.fromhex(vector["secret_id"])
    message = device_proof_message(secret_id, vector["challenge"])
    assert message.hex() == vector["message"]
    # Ed25519 is deterministic, so signing reproduces the vector exactly.
    assert b64url_encode(keys.sign_proof(secret_id, vector["challenge"])) == vector["proof"]
    assert verify_device_proof(
        keys.public.signing_key, secret_id, vector["challenge"], vector["proof"]
    )


@pytest.mark.parametrize("vector", REFUSALS, ids=[vector["name"] for vector in REFUSALS])
def test_proof_refusals(vector: dict[str, str]) -> None:
    assert not verify_device_proof(
        bytes.fromhex(vector["ed25519_public"]),
        bytes.fromhex(vector["secret_id"]),
        vector["challenge"],
        vector["proof"],
    )


@settings(max_examples=50, deadline=None)
@given(
    seed=seeds,
    secret_ids=st.lists(st.binary(min_size=16, max_size=16), min_size=2, max_size=2, unique=True),
    challenges=st.lists(st.text(min_size=1, max_size=80), min_size=2, max_size=2, unique=True),
)
def test_a_proof_is_bound_to_its_secret_and_its_challenge(
    seed: bytes, secret_ids: list[bytes], challenges: list[str]
) -> None:
    keys = DeviceKeys.from_seed(seed)
    proof = b64url_encode(keys.sign_proof(secret_ids[0], challenges[0]))
    key = keys.public.signing_key
    assert verify_device_proof(key, secret_ids[0], challenges[0], proof)
    assert not verify_device_proof(key, secret_ids[1], challenges[0], proof)
    assert not verify_device_proof(key, secret_ids[0], challenges[1], proof)


def test_proof_message_needs_a_16_byte_secret_id() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        device_proof_message(bytes(15), "c")
    assert not verify_device_proof(bytes.fromhex(DEVICES[0]["ed25519_public"]), bytes(15), "c", "")


# -- recovery phrase -----------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES, ids=[device["name"] for device in DEVICES])
def test_recovery_phrase_matches_the_vector(device: dict[str, str]) -> None:
    seed = bytes.fromhex(device["seed"])
    assert seed_to_phrase(seed) == device["recovery_phrase"]
    assert len(device["recovery_phrase"].split()) == 24
    assert phrase_to_seed(device["recovery_phrase"]) == seed
    # Typed by a person: other spacing and case.
    sloppy = "  " + "\n".join(device["recovery_phrase"].upper().split()) + " "
    assert phrase_to_seed(sloppy) == seed


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda words: words[:-1], "has 24 words and this one has 23"),
        (lambda words: [*words, "abandon"], "has 24 words and this one has 25"),
        (lambda words: [*words[:6], "abandonn", *words[7:]], "Word 7 "),
        (lambda words: [words[1], words[0], *words[2:]], "does not check out"),
    ],
    ids=["missing-word", "extra-word", "misspelt-word", "swapped-words"],
)
def test_bad_phrases_are_refused_without_echoing_words(change: Any, message: str) -> None:
    phrase = DEVICES[0]["recovery_phrase"]
    words = phrase.split()
    assert words[0] != words[1]
    with pytest.raises(InvalidPhrase, match=message) as caught:
        phrase_to_seed(" ".join(change(words)))
    assert not any(word in str(caught.value) for word in words if len(word) > 3)


@settings(max_examples=50, deadline=None)
@given(seed=seeds)
def test_phrase_round_trips(seed: bytes) -> None:
    assert phrase_to_seed(seed_to_phrase(seed)) == seed
