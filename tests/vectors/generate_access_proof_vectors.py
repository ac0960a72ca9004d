"""Rebuild tests/vectors/access_proof.json (docs/protocol/access.md, "Key-knowledge proof").

    .venv/bin/python tests/vectors/generate_access_proof_vectors.py          # rewrite the file
    .venv/bin/python tests/vectors/generate_access_proof_vectors.py --check  # exit 1 if stale

Written from the spec with pyca/cryptography's primitives only (nothing imported from
`atopos`), so the vectors check the reference implementation instead of copying it.
Ed25519 signatures are deterministic (RFC 8032), so every value is fixed.
"""

from __future__ import annotations

import base64
import json
import sys
import unicodedata
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = Path(__file__).resolve().parent
PATH = HERE / "access_proof.json"

INFO = b"atopos/access-key/v1"
LABEL = b"atopos/access-proof/v1\x00"
SECRET_ID = bytes(range(16))
OTHER_SECRET_ID = bytes(range(1, 17))
CHALLENGE = "AQABAgMEBQYHCAkKCwwNDg8AAAAAcUuxgBCqu8zd7v8AESIzRFVmd4iZqrvM3e7_"
OTHER_CHALLENGE = "AQABAgMEBQYHCAkKCwwNDg8AAAAAcUuxgBCqu8zd7v8AESIzRFVmd4iZqrvM3e7-"
# Cheap Argon2id costs keep the browser test fast; the construction is the same at any cost.
ARGON2 = {"memory_kib": 256, "iterations": 2, "lanes": 1}

FORMAT = [
    "Key-knowledge proof (docs/protocol/access.md, 'Key-knowledge proof').",
    "Hex is lowercase; base64url is RFC 4648 section 5 without padding.",
    "valid[]: link_key (base64url, 32 bytes), passphrase (string or null), argon2",
    "  {memory_kib, iterations, lanes, salt: base64url} or null, passphrase_key (hex, the",
    "  Argon2id output) or null, access_seed (hex, HKDF-SHA256(link_key || passphrase_key,",
    "  empty salt, info 'atopos/access-key/v1', 32)), access_key (base64url, the Ed25519",
    "  public key the creator uploads), secret_id (base64url, 16 bytes), challenge (string),",
    "  message (hex, the signed bytes), access_proof (base64url, the Ed25519 signature).",
    "  wrong_passphrase / wrong_link_key: what a reader with a typo derives instead",
    "  (access_key); its proof must be refused.",
    "invalid_proofs[]: access_key, secret_id, challenge, access_proof that a verifier must",
    "  refuse, with the reason.",
]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def passphrase_key(passphrase: str, salt: bytes) -> bytes:
    return Argon2id(
        salt=salt,
        length=32,
        iterations=ARGON2["iterations"],
        lanes=ARGON2["lanes"],
        memory_cost=ARGON2["memory_kib"],
    ).derive(unicodedata.normalize("NFC", passphrase).encode("utf-8"))


def access_seed(link_key: bytes, stretched: bytes | None) -> bytes:
    ikm = link_key + (stretched or b"")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO).derive(ikm)


def public_key(seed: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()


def sign(seed: bytes, secret_id: bytes, challenge: str) -> bytes:
    message = LABEL + secret_id + challenge.encode("utf-8")
    return Ed25519PrivateKey.from_private_bytes(seed).sign(message)


def case(name: str, link_key: bytes, passphrase: str | None, salt: bytes | None) -> dict[str, Any]:
    stretched = passphrase_key(passphrase, salt) if passphrase is not None and salt else None
    seed = access_seed(link_key, stretched)
    message = LABEL + SECRET_ID + CHALLENGE.encode("utf-8")
    wrong_link_key = bytes([link_key[0] ^ 1]) + link_key[1:]
    wrong: dict[str, Any] = {
        "wrong_link_key": {
            "link_key": b64url(wrong_link_key),
            "access_key": b64url(public_key(access_seed(wrong_link_key, stretched))),
        }
    }
    if passphrase is not None and salt is not None:
        typo = passphrase + "!"
        wrong["wrong_passphrase"] = {
            "passphrase": typo,
            "access_key": b64url(public_key(access_seed(link_key, passphrase_key(typo, salt)))),
        }
    return {
        "name": name,
        "link_key": b64url(link_key),
        "passphrase": passphrase,
        "argon2": None if salt is None else {**ARGON2, "salt": b64url(salt)},
        "passphrase_key": None if stretched is None else stretched.hex(),
        "access_seed": seed.hex(),
        "access_key": b64url(public_key(seed)),
        "secret_id": b64url(SECRET_ID),
        "challenge": CHALLENGE,
        "message": message.hex(),
        "access_proof": b64url(sign(seed, SECRET_ID, CHALLENGE)),
        **wrong,
    }


def build() -> dict[str, Any]:
    link_key = bytes(range(32))
    valid = [
        case("link key only", link_key, None, None),
        case("link key and passphrase", link_key, "correct horse battery staple", bytes(16)),
        # NFD in, NFC hashed: the same passphrase typed on another system.
        case(
            "passphrase normalised to NFC", bytes(range(32, 64)), "cafe\u0301 \U0001f511", b"s" * 16
        ),
    ]
    seed = access_seed(link_key, None)
    key = b64url(public_key(seed))
    good = sign(seed, SECRET_ID, CHALLENGE)
    other_seed = access_seed(bytes(range(1, 33)), None)

    def bad(reason: str, proof: str, *, secret_id: bytes = SECRET_ID, challenge: str = CHALLENGE):
        return {
            "reason": reason,
            "access_key": key,
            "secret_id": b64url(secret_id),
            "challenge": challenge,
            "access_proof": proof,
        }

    flipped = bytearray(good)
    flipped[10] ^= 0x40
    invalid = [
        bad("signed with another access key", b64url(sign(other_seed, SECRET_ID, CHALLENGE))),
        bad("signed for another challenge", b64url(sign(seed, SECRET_ID, OTHER_CHALLENGE))),
        bad("signed for another secret", b64url(sign(seed, OTHER_SECRET_ID, CHALLENGE))),
        bad("a flipped bit", b64url(bytes(flipped))),
        bad("63 bytes", b64url(good[:63])),
        bad("padded base64url", b64url(good) + "=="),
        bad("standard base64 alphabet", base64.b64encode(good).rstrip(b"=").decode()),
        bad("empty", ""),
        bad(
            "the device-proof label",
            b64url(
                Ed25519PrivateKey.from_private_bytes(seed).sign(
                    b"atopos/device-proof/v1\x00" + SECRET_ID + CHALLENGE.encode()
                )
            ),
        ),
    ]
    return {"format": FORMAT, "valid": valid, "invalid_proofs": invalid}


def main() -> int:
    text = json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
    if "--check" in sys.argv[1:]:
        if PATH.read_text(encoding="utf-8") != text:
            print(f"{PATH} is stale; run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    PATH.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
