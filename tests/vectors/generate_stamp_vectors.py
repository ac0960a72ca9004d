"""Rebuild tests/vectors/stamps.json (docs/protocol/access.md, "Stamp: a reveal in one
request").

    .venv/bin/python tests/vectors/generate_stamp_vectors.py          # rewrite the file
    .venv/bin/python tests/vectors/generate_stamp_vectors.py --check  # exit 1 if stale

Written from the rules alone (nothing imported from `atopos`; pyca/cryptography only for
HKDF and Ed25519), so the vectors check the reference implementation instead of copying it:

    stamp    = "s1." || b64url(secret_id) || "." || decimal(t) || "." || b64url(salt)
    stamp id = SHA-256("atopos/ticket-id" || 0x00 || ascii(stamp))[0:16]
    work     = SHA-256(utf8(stamp) || ":" || ascii(decimal(nonce))), leading zero bits
    proof    = Ed25519-Sign(access key, "atopos/stamp-proof/v1" || 0x00 || secret_id ||
               utf8(stamp))

(the stamp's own label: a signature over a challenge, label "atopos/access-proof/v1", is
never one over a stamp; `challenge_label_proof` is that signature, which must be refused).

The access key is the benchmark's (bench/wrk/access.lua): the one of an all-zero link key.
Ed25519 signatures are deterministic (RFC 8032), so every value is fixed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = Path(__file__).resolve().parent
PATH = HERE / "stamps.json"

ACCESS_KEY_INFO = b"atopos/access-key/v1"
ACCESS_PROOF_LABEL = b"atopos/access-proof/v1\x00"
STAMP_PROOF_LABEL = b"atopos/stamp-proof/v1\x00"
TICKET_ID_LABEL = b"atopos/ticket-id\x00"
LINK_KEY = bytes(32)
BITS = 8
FORMAT = [
    "Stamps (docs/protocol/access.md, 'Stamp: a reveal in one request').",
    "Hex is lowercase; base64url is RFC 4648 section 5 without padding.",
    "regex: the one spelling a stamp may have; both base64url parts must also be canonical",
    "  (their unused trailing bits zero).",
    "access_key: link_key (hex), access_seed (hex, HKDF-SHA256(link_key, empty salt, info",
    "  'atopos/access-key/v1', 32)), access_key (base64url, the Ed25519 public key): the key",
    "  of every secret the benchmark creates (bench/wrk/create.lua, access.lua).",
    "valid[]: secret_id (hex), t (Unix seconds), salt (hex): the fields; stamp: their one",
    "  spelling; stamp_id (hex, 16 bytes); work[]: nonce, sha256 (hex, of utf8(stamp) || ':'",
    "  || decimal(nonce)), leading_zero_bits; first_nonce: the smallest nonce with at least",
    "  `bits` leading zero bits; access_proof_message (hex, the signed bytes: proof_label",
    "  || 0x00 || secret_id || utf8(stamp)); access_proof (base64url, the Ed25519 signature by",
    "  access_key over that message); challenge_label_proof (base64url, the signature over",
    "  the same stamp under the challenge label 'atopos/access-proof/v1': a server refuses it).",
    "invalid[]: stamp (a text a parser must refuse: a server answers 422 invalid_stamp), and",
    "  the reason it is not a stamp.",
]
REGEX = r"^s1\.[A-Za-z0-9_-]{22}\.(0|[1-9][0-9]{0,11})\.[A-Za-z0-9_-]{22}$"
VALID = [
    # name, secret id, t, salt
    ("ordinary", bytes(range(16)), 1_800_000_000, bytes(range(16, 32))),
    ("zero-time", bytes(16), 0, bytes(16)),
    ("largest-time", b"\xff" * 16, 999_999_999_999, b"\xff" * 16),
    ("one-digit-time", bytes(range(100, 116)), 7, bytes(range(200, 216))),
]
_ID = "AAECAwQFBgcICQoLDA0ODw"  # bytes(range(16))
_SALT = "EBESExQVFhcYGRobHB0eHw"  # bytes(range(16, 32))
INVALID = [
    ("", "empty"),
    (f"s2.{_ID}.1800000000.{_SALT}", "another version"),
    (f"S1.{_ID}.1800000000.{_SALT}", "the prefix is lower case"),
    (f"{_ID}.1800000000.{_SALT}", "no prefix"),
    (f"s1.{_ID}.1800000000", "no salt"),
    (f"s1.{_ID}.1800000000.{_SALT}.", "a trailing dot"),
    (f"s1.{_ID}.1800000000.{_SALT}.x", "a fourth field"),
    (f"s1..{_ID}.1800000000.{_SALT}", "an empty field"),
    (f"s1.{_ID[:-1]}.1800000000.{_SALT}", "the id is 21 characters"),
    (f"s1.{_ID}A.1800000000.{_SALT}", "the id is 23 characters"),
    (f"s1.{_ID[:-1]}x.1800000000.{_SALT}", "the id is not canonical (unused bits set)"),
    (f"s1.{_ID[:-2]}==.1800000000.{_SALT}", "padding in the id"),
    (f"s1.{_ID[:-1]}+.1800000000.{_SALT}", "a standard-base64 character in the id"),
    (f"s1.{_ID}.1800000000.{_SALT[:-1]}", "the salt is 21 characters"),
    (f"s1.{_ID}.1800000000.{_SALT}A", "the salt is 23 characters"),
    (f"s1.{_ID}.1800000000.{_SALT[:-1]}h", "the salt is not canonical (unused bits set)"),
    (f"s1.{_ID}.1800000000.{_SALT[:-1]}/", "a standard-base64 character in the salt"),
    (f"s1.{_ID}.01800000000.{_SALT}", "a leading zero in t"),
    (f"s1.{_ID}.00.{_SALT}", "zero spelled with two digits"),
    (f"s1.{_ID}.+1800000000.{_SALT}", "a sign in t"),
    (f"s1.{_ID}.-1.{_SALT}", "a negative t"),
    (f"s1.{_ID}..{_SALT}", "t is empty"),
    (f"s1.{_ID}.1000000000000.{_SALT}", "t has 13 digits"),
    (f"s1.{_ID}.1.8e9.{_SALT}", "t is not a whole decimal number"),
    (f"s1.{_ID}.1_800_000_000.{_SALT}", "underscores in t"),
    (f"s1.{_ID}.\u0661\u0668\u0660\u0660.{_SALT}", "non-ASCII digits in t"),
    (f"s1.{_ID}.\uff11\uff18\uff10\uff10.{_SALT}", "full-width digits in t"),
    (f"s1.{_ID}.1800000000.{_SALT}\n", "a trailing newline"),
    (f" s1.{_ID}.1800000000.{_SALT}", "a leading space"),
    (f"s1.{_ID}.1800000000.{_SALT} ", "a trailing space"),
    (f"s1:{_ID}:1800000000:{_SALT}", "colons instead of dots"),
]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def stamp_text(secret_id: bytes, t: int, salt: bytes) -> str:
    return f"s1.{b64url(secret_id)}.{t}.{b64url(salt)}"


def work_digest(stamp: str, nonce: int) -> bytes:
    return hashlib.sha256(stamp.encode("utf-8") + b":" + str(nonce).encode("ascii")).digest()


def leading_zero_bits(data: bytes) -> int:
    return len(data) * 8 - int.from_bytes(data, "big").bit_length()


def first_nonce(stamp: str, bits: int) -> int:
    nonce = 0
    while leading_zero_bits(work_digest(stamp, nonce)) < bits:
        nonce += 1
    return nonce


def access_seed() -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=ACCESS_KEY_INFO)
    return hkdf.derive(LINK_KEY)


def valid_entry(
    name: str, secret_id: bytes, t: int, salt: bytes, signer: Ed25519PrivateKey
) -> dict[str, Any]:
    stamp = stamp_text(secret_id, t, salt)
    first = first_nonce(stamp, BITS)
    message = STAMP_PROOF_LABEL + secret_id + stamp.encode("utf-8")
    as_challenge = ACCESS_PROOF_LABEL + secret_id + stamp.encode("utf-8")
    return {
        "name": name,
        "secret_id": secret_id.hex(),
        "t": t,
        "salt": salt.hex(),
        "stamp": stamp,
        "stamp_id": hashlib.sha256(TICKET_ID_LABEL + stamp.encode("ascii")).digest()[:16].hex(),
        "work": [
            {
                "nonce": nonce,
                "sha256": work_digest(stamp, nonce).hex(),
                "leading_zero_bits": leading_zero_bits(work_digest(stamp, nonce)),
            }
            for nonce in sorted({0, 1, first, 2**64 - 1})
        ],
        "first_nonce": first,
        "access_proof_message": message.hex(),
        "access_proof": b64url(signer.sign(message)),
        "challenge_label_proof": b64url(signer.sign(as_challenge)),
    }


def build() -> dict[str, Any]:
    seed = access_seed()
    signer = Ed25519PrivateKey.from_private_bytes(seed)
    return {
        "description": (
            "Stamps: spelling, stamp id, proof of work and access proof over a stamp. "
            "Generated by tests/vectors/generate_stamp_vectors.py."
        ),
        "format": FORMAT,
        "regex": REGEX,
        "prefix": "s1.",
        "future_skew": 30,
        "bits": BITS,
        "proof_label": STAMP_PROOF_LABEL.removesuffix(b"\x00").decode("ascii"),
        "access_key": {
            "link_key": LINK_KEY.hex(),
            "access_seed": seed.hex(),
            "access_key": b64url(signer.public_key().public_bytes_raw()),
        },
        "valid": [valid_entry(*fields, signer) for fields in VALID],
        "invalid": [{"stamp": text, "reason": reason} for text, reason in INVALID],
    }


def main() -> int:
    text = json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
    if "--check" in sys.argv:
        return 0 if PATH.read_text(encoding="utf-8") == text else 1
    PATH.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
