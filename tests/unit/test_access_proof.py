"""The key-knowledge proof against tests/vectors/access_proof.json (the browser passes the
same file: tests/browser/test_access_proof_vectors.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from atopos.crypto.access_proof import (
    AccessSigner,
    access_proof_message,
    verify_access_proof,
)
from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.crypto.envelope import Argon2Params, Metadata, Sealer
from atopos.crypto.kdf import derive_passphrase_key

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
DATA = json.loads((VECTORS / "access_proof.json").read_text(encoding="utf-8"))


def _signer(vector: dict[str, Any], link_key: bytes, passphrase: str | None) -> AccessSigner:
    stretched = None
    if passphrase is not None:
        argon2 = vector["argon2"]
        params = Argon2Params(argon2["memory_kib"], argon2["iterations"], argon2["lanes"])
        stretched = derive_passphrase_key(passphrase, b64url_decode(argon2["salt"]), params)
        if vector["passphrase"] == passphrase:
            assert stretched.hex() == vector["passphrase_key"]
    return AccessSigner(link_key, stretched)


@pytest.mark.parametrize("vector", DATA["valid"], ids=lambda v: v["name"])
def test_valid_vectors(vector: dict[str, Any]) -> None:
    secret_id = b64url_decode(vector["secret_id"])
    signer = _signer(vector, b64url_decode(vector["link_key"]), vector["passphrase"])
    assert b64url_encode(signer.public_key) == vector["access_key"]
    assert access_proof_message(secret_id, vector["challenge"]).hex() == vector["message"]
    proof = signer.sign_proof(secret_id, vector["challenge"])
    assert b64url_encode(proof) == vector["access_proof"]
    assert verify_access_proof(
        signer.public_key, secret_id, vector["challenge"], vector["access_proof"]
    )


@pytest.mark.parametrize("vector", DATA["valid"], ids=lambda v: v["name"])
def test_a_typo_gives_another_key_whose_proof_is_refused(vector: dict[str, Any]) -> None:
    right = b64url_decode(vector["access_key"])
    secret_id = b64url_decode(vector["secret_id"])
    typos = [(b64url_decode(vector["wrong_link_key"]["link_key"]), vector["passphrase"])]
    expected = [vector["wrong_link_key"]["access_key"]]
    if "wrong_passphrase" in vector:
        typos.append((b64url_decode(vector["link_key"]), vector["wrong_passphrase"]["passphrase"]))
        expected.append(vector["wrong_passphrase"]["access_key"])
    for (link_key, passphrase), access_key in zip(typos, expected, strict=True):
        signer = _signer(vector, link_key, passphrase)
        assert b64url_encode(signer.public_key) == access_key != vector["access_key"]
        proof = b64url_encode(signer.sign_proof(secret_id, vector["challenge"]))
        assert not verify_access_proof(right, secret_id, vector["challenge"], proof)


@pytest.mark.parametrize("vector", DATA["invalid_proofs"], ids=lambda v: v["reason"])
def test_invalid_proofs_are_refused(vector: dict[str, Any]) -> None:
    assert not verify_access_proof(
        b64url_decode(vector["access_key"]),
        b64url_decode(vector["secret_id"]),
        vector["challenge"],
        vector["access_proof"],
    )


def test_a_sealer_uploads_the_access_key_of_its_link_key_and_passphrase() -> None:
    link_key = bytes(range(32))
    params = Argon2Params(memory_kib=256, iterations=1, lanes=1)
    draws = iter([bytes(32), b"\x07" * 16])
    sealer = Sealer(
        link_key,
        Metadata(kind="text", size=2),
        random_bytes=lambda n: next(draws)[:n],
        passphrase="hunter2",
        argon2=params,
    )
    stretched = derive_passphrase_key("hunter2", b"\x07" * 16, params)
    assert sealer.access_key == AccessSigner(link_key, stretched).public_key
    assert sealer.access_key != AccessSigner(link_key).public_key


def test_the_signer_never_shows_its_key() -> None:
    assert repr(AccessSigner(bytes(32))) == "AccessSigner(...)"


def test_the_vector_file_is_current() -> None:
    generator = VECTORS / "generate_access_proof_vectors.py"
    result = subprocess.run([sys.executable, str(generator), "--check"], check=False)
    assert result.returncode == 0
