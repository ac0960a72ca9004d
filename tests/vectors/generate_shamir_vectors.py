"""Rebuild tests/vectors/shamir.json (split links, docs/protocol/links.md "Split links").

    .venv/bin/python tests/vectors/generate_shamir_vectors.py          # rewrite the file
    .venv/bin/python tests/vectors/generate_shamir_vectors.py --check  # exit 1 if stale

Written apart from `atopos` (nothing imported from it), with log/exp tables over the
generator 3 where crypto/shamir.py and shamir.js multiply bit by bit, so the vectors pin
both implementations to a second one. Each split vector gives the key, k, n and the
randomness in the order it is drawn (the 8-byte share-set id, then the coefficients of
degree 1..k-1, 32 bytes each), and the n shares in their byte form and as share links.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PATH = HERE / "shamir.json"
SERVER = "https://atopos.example"
SECRET_ID = base64.urlsafe_b64encode(bytes(range(16))).rstrip(b"=").decode("ascii")

EXP = [0] * 510
LOG = [0] * 256
_value = 1
for _power in range(255):
    EXP[_power] = EXP[_power + 255] = _value
    LOG[_value] = _power
    # times 3 = times 2 (shift, reduce by 0x11B) plus once
    _doubled = (_value << 1) ^ (0x11B if _value & 0x80 else 0)
    _value = _doubled ^ _value


def mul(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else EXP[LOG[a] + LOG[b]]


def div(a: int, b: int) -> int:
    return 0 if a == 0 else EXP[LOG[a] + 255 - LOG[b]]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def randomness(label: str, size: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{label}/{counter}".encode()).digest()
        counter += 1
    return out[:size]


def split(key: bytes, k: int, n: int, drawn: bytes) -> list[bytes]:
    set_id, rest = drawn[:8], drawn[8:]
    coefficients = [key] + [rest[32 * d : 32 * d + 32] for d in range(k - 1)]
    shares = []
    for x in range(1, n + 1):
        value = bytearray(32)
        for i in range(32):
            total, x_power = 0, 1
            for coefficient in coefficients:
                total ^= mul(coefficient[i], x_power)
                x_power = mul(x_power, x)
            value[i] = total
        shares.append(bytes([1]) + set_id + bytes([k, n, x]) + bytes(value))
    return shares


def combine(shares: list[bytes]) -> bytes:
    xs = [share[11] for share in shares]
    key = bytearray(32)
    for j, share in enumerate(shares):
        weight = 1
        for m, x in enumerate(xs):
            if m != j:
                weight = mul(weight, div(x, x ^ xs[j]))
        for i in range(32):
            key[i] ^= mul(weight, share[12 + i])
    return bytes(key)


def split_vector(name: str, key: bytes, k: int, n: int) -> dict[str, Any]:
    drawn = randomness(name, 8 + 32 * (k - 1))
    shares = split(key, k, n, drawn)
    for subset in itertools.combinations(shares, k):
        assert combine(list(subset)) == key
    return {
        "name": name,
        "key_hex": key.hex(),
        "threshold": k,
        "count": n,
        "random_hex": drawn.hex(),
        "shares_hex": [share.hex() for share in shares],
        "links": [f"{SERVER}/s/{SECRET_ID}#{b64url(share)}" for share in shares],
    }


def build() -> dict[str, Any]:
    splits = [
        split_vector("2-of-3", bytes(range(32)), 2, 3),
        split_vector("2-of-2", bytes([0xFF] * 32), 2, 2),
        split_vector("3-of-5", randomness("key 3-of-5", 32), 3, 5),
        split_vector("10-of-10", randomness("key 10-of-10", 32), 10, 10),
    ]
    first = [bytes.fromhex(text) for text in splits[0]["shares_hex"]]
    other = [bytes.fromhex(text) for text in splits[2]["shares_hex"]]
    renamed = first[1][:1] + bytes(8) + first[1][9:]
    invalid = [
        {"name": "one-of-two-needed", "shares_hex": [first[0].hex()], "missing": 1},
        {"name": "same-share-twice", "shares_hex": [first[0].hex(), first[0].hex()], "missing": 1},
        {"name": "two-splits", "shares_hex": [first[0].hex(), other[1].hex()], "says": "different"},
        {
            "name": "other-set-id",
            "shares_hex": [first[0].hex(), renamed.hex()],
            "says": "different",
        },
        {
            # A share of the same split and index whose value differs: one of the two was
            # changed; combining either would give a wrong key.
            "name": "same-index-differs",
            "shares_hex": [first[0].hex(), (first[0][:-1] + bytes([first[0][-1] ^ 1])).hex()],
            "says": "same index",
        },
        {
            "name": "format-2",
            "shares_hex": [(b"\x02" + first[0][1:]).hex()],
            "says": "not a key share",
        },
        {"name": "short", "shares_hex": [first[0][:-1].hex()], "says": "not a key share"},
        {
            "name": "threshold-1",
            "shares_hex": [(first[0][:9] + b"\x01" + first[0][10:]).hex()],
            "says": "k of n",
        },
        {
            "name": "count-11",
            "shares_hex": [(first[0][:9] + b"\x02\x0b" + first[0][11:]).hex()],
            "says": "k of n",
        },
        {
            "name": "threshold-over-count",
            "shares_hex": [(first[0][:9] + b"\x03\x02" + first[0][11:]).hex()],
            "says": "k of n",
        },
        {
            "name": "index-0",
            "shares_hex": [(first[0][:11] + b"\x00" + first[0][12:]).hex()],
            "says": "index",
        },
        {
            "name": "index-past-count",
            "shares_hex": [(first[0][:11] + b"\x04" + first[0][12:]).hex()],
            "says": "index",
        },
    ]
    return {
        "description": (
            "Shamir's secret sharing of the 32-byte link key over GF(2^8) (x^8+x^4+x^3+x+1). "
            "A share is format (1) || share-set id (8) || k (1) || n (1) || index x (1) || "
            "32 bytes of the key's polynomials at x; random_hex is the randomness in the order "
            "drawn: the set id, then the coefficients of degree 1..k-1. Any k shares give "
            "key_hex. Generated by tests/vectors/generate_shamir_vectors.py."
        ),
        "splits": splits,
        "invalid": invalid,
    }


def main() -> int:
    text = json.dumps(build(), indent=2) + "\n"
    if "--check" in sys.argv:
        return 0 if PATH.read_text(encoding="utf-8") == text else 1
    PATH.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
