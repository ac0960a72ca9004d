"""The key-knowledge proof (docs/protocol/access.md, "Key-knowledge proof").

The creator derives an Ed25519 key pair one-way from the content key material (the link
key, and the Argon2id output when the secret has a passphrase) and uploads only its public
half, the *access key*. At the ticket step the reader signs the secret id and the fresh
challenge with the private half, the *access proof*: so a typo in the link, a wrong
passphrase or an id alone is refused before any view is spent. The server cannot test
passphrase guesses with the access key, because every guess also needs the link key.

A stamp (crypto/stamps.py) is signed under its own label, "atopos/stamp-proof/v1": a
signature made over a server's challenge can never serve as one over a stamp, so a relay
that hands a reader a stamp disguised as a challenge gets nothing it can spend later.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from atopos.crypto.challenge_proof import challenge_proof_message, verify_challenge_proof
from atopos.crypto.hkdf import derive_key

__all__ = [
    "ACCESS_KEY_BYTES",
    "ACCESS_KEY_INFO",
    "ACCESS_PROOF_BYTES",
    "ACCESS_PROOF_LABEL",
    "STAMP_PROOF_LABEL",
    "AccessSigner",
    "access_proof_message",
    "stamp_proof_message",
    "verify_access_proof",
    "verify_stamp_proof",
]

ACCESS_KEY_INFO = b"atopos/access-key/v1"
ACCESS_PROOF_LABEL = b"atopos/access-proof/v1\x00"
# A stamp's access proof: never the same signed bytes as a challenge's (access.md, "Stamp").
STAMP_PROOF_LABEL = b"atopos/stamp-proof/v1\x00"
ACCESS_KEY_BYTES = 32
ACCESS_PROOF_BYTES = 64
_LINK_KEY_BYTES = 32
_PASSPHRASE_KEY_BYTES = 32


class AccessSigner:
    """The private half of a secret's access key; its repr shows nothing."""

    __slots__ = ("_signing", "public_key")

    public_key: bytes

    def __init__(self, link_key: bytes, passphrase_key: bytes | None = None) -> None:
        """seed = HKDF-SHA256(link_key [|| passphrase_key], empty salt,
        info "atopos/access-key/v1", 32 bytes), used as the RFC 8032 private key."""
        if len(link_key) != _LINK_KEY_BYTES:
            raise ValueError(f"the link key must be {_LINK_KEY_BYTES} bytes")
        if passphrase_key is not None and len(passphrase_key) != _PASSPHRASE_KEY_BYTES:
            raise ValueError(f"the passphrase key must be {_PASSPHRASE_KEY_BYTES} bytes")
        ikm = bytes(link_key) + (bytes(passphrase_key) if passphrase_key is not None else b"")
        seed = derive_key(ikm, info=ACCESS_KEY_INFO)
        self._signing = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = self._signing.public_key().public_bytes_raw()

    def __repr__(self) -> str:
        return "AccessSigner(...)"

    def sign_proof(self, secret_id: bytes, challenge: str) -> bytes:
        """The 64-byte access proof for this secret id and this exact challenge."""
        return self._signing.sign(access_proof_message(secret_id, challenge))

    def sign_stamp_proof(self, secret_id: bytes, stamp: str) -> bytes:
        """The 64-byte access proof over a stamp this reader made (its own label)."""
        return self._signing.sign(stamp_proof_message(secret_id, stamp))


def access_proof_message(secret_id: bytes, challenge: str) -> bytes:
    """The signed bytes: "atopos/access-proof/v1" || 0x00 || secret_id || utf8(challenge)."""
    return challenge_proof_message(ACCESS_PROOF_LABEL, secret_id, challenge)


def verify_access_proof(access_key: bytes, secret_id: bytes, challenge: str, proof: str) -> bool:
    """True when `proof` (unpadded base64url of 64 bytes) is the access key's signature over
    this secret id and this challenge. Never raises for bad input: it is simply False."""
    return verify_challenge_proof(ACCESS_PROOF_LABEL, access_key, secret_id, challenge, proof)


def stamp_proof_message(secret_id: bytes, stamp: str) -> bytes:
    """The signed bytes over a stamp: "atopos/stamp-proof/v1" || 0x00 || secret_id ||
    utf8(stamp)."""
    return challenge_proof_message(STAMP_PROOF_LABEL, secret_id, stamp)


def verify_stamp_proof(access_key: bytes, secret_id: bytes, stamp: str, proof: str) -> bool:
    """True when `proof` is the access key's signature over this secret id and this stamp
    under the stamp label (a proof over a challenge never passes). Never raises."""
    return verify_challenge_proof(STAMP_PROOF_LABEL, access_key, secret_id, stamp, proof)
