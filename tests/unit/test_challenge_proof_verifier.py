"""The challenge-proof check (crypto/challenge_proof.py) runs on libsodium; it must give
pyca's answer on everything an honest or a careless client sends: real proofs, proofs over
another challenge, id or label, flipped bits anywhere in the signature, other keys, and
malformed encodings. The shared vectors (access_proof.json, the device vectors) pin it
further."""

from __future__ import annotations

import random

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from atopos.crypto.base64url import b64url_encode
from atopos.crypto.challenge_proof import challenge_proof_message, verify_challenge_proof

_LABEL = b"atopos test proof v1"
_CASES = 150


def _pyca_accepts(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def test_libsodium_and_pyca_agree_on_real_and_damaged_proofs() -> None:
    rng = random.Random(20261204)
    accepted = refused = 0
    for case in range(_CASES):
        private = Ed25519PrivateKey.generate()
        public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        other = (
            Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        )
        secret_id = rng.randbytes(16)
        challenge = f"challenge-{case}"
        message = challenge_proof_message(_LABEL, secret_id, challenge)
        signature = private.sign(message)
        flipped = bytearray(signature)
        flipped[rng.randrange(64)] ^= 1 << rng.randrange(8)
        attempts = [
            (public, secret_id, challenge, signature),
            (public, secret_id, challenge + "x", signature),
            (public, rng.randbytes(16), challenge, signature),
            (other, secret_id, challenge, signature),
            (public, secret_id, challenge, bytes(flipped)),
        ]
        for key, signed_id, signed_challenge, proof in attempts:
            expected = _pyca_accepts(
                key, challenge_proof_message(_LABEL, signed_id, signed_challenge), proof
            )
            got = verify_challenge_proof(
                _LABEL, key, signed_id, signed_challenge, b64url_encode(proof)
            )
            assert got is expected
            accepted += got
            refused += not got
        assert not verify_challenge_proof(
            b"another label", public, secret_id, challenge, b64url_encode(signature)
        )
    assert accepted == _CASES
    assert refused == 4 * _CASES


def test_malformed_inputs_are_false_not_errors() -> None:
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    secret_id = bytes(16)
    signature = private.sign(challenge_proof_message(_LABEL, secret_id, "c"))
    proof = b64url_encode(signature)
    assert verify_challenge_proof(_LABEL, public, secret_id, "c", proof)
    assert not verify_challenge_proof(_LABEL, public[:31], secret_id, "c", proof)
    assert not verify_challenge_proof(_LABEL, public + b"\0", secret_id, "c", proof)
    assert not verify_challenge_proof(_LABEL, public, secret_id[:15], "c", proof)
    assert not verify_challenge_proof(_LABEL, public, secret_id, "c", proof[:-2])
    assert not verify_challenge_proof(_LABEL, public, secret_id, "c", "!not base64!")
    assert not verify_challenge_proof(_LABEL, bytes(32), secret_id, "c", proof)
    # A small-order key (the identity) is refused.
    identity = (1).to_bytes(32, "little")
    assert not verify_challenge_proof(_LABEL, identity, secret_id, "c", proof)
