"""A signature over a server's challenge for one secret: the shape shared by the device proof
(docs/protocol/device.md) and the key-knowledge proof (docs/protocol/access.md). Each signs
`label || secret_id || utf8(challenge)` with its own Ed25519 key and its own label."""

from __future__ import annotations

from nacl.bindings import crypto_sign_open
from nacl.exceptions import CryptoError as SodiumCryptoError

from atopos.crypto.base64url import b64url_decode
from atopos.crypto.sizes import SECRET_ID_BYTES

__all__ = ["SIGNATURE_BYTES", "challenge_proof_message", "verify_challenge_proof"]

SIGNATURE_BYTES = 64
_PUBLIC_KEY_BYTES = 32


def challenge_proof_message(label: bytes, secret_id: bytes, challenge: str) -> bytes:
    """The signed bytes: label || secret_id || utf8(challenge); ValueError for a bad id."""
    if len(secret_id) != SECRET_ID_BYTES:
        raise ValueError(f"a secret id is {SECRET_ID_BYTES} bytes")
    return label + bytes(secret_id) + challenge.encode("utf-8")


def verify_challenge_proof(
    label: bytes, public_key: bytes, secret_id: bytes, challenge: str, proof: str
) -> bool:
    """True when `proof` (unpadded base64url of 64 bytes) is `public_key`'s signature over
    this secret id and this challenge. Never raises for bad input: it is simply False."""
    try:
        signature = b64url_decode(proof)
    except ValueError:
        return False
    if (
        len(signature) != SIGNATURE_BYTES
        or len(secret_id) != SECRET_ID_BYTES
        or len(public_key) != _PUBLIC_KEY_BYTES
    ):
        return False
    # libsodium's Ed25519 verification (PyCA's PyNaCl): half the CPU of pyca's key object
    # and verify, on every ticket (docs/performance.md). It is RFC 8032's check, cofactorless
    # like OpenSSL's, and stricter only on encodings no honest signer makes (a small-order
    # R, a non-canonical key); tests/unit/test_challenge_proof_verifier.py holds it to pyca.
    try:
        crypto_sign_open(
            signature + challenge_proof_message(label, secret_id, challenge), bytes(public_key)
        )
    except (SodiumCryptoError, ValueError, TypeError):
        return False
    return True
