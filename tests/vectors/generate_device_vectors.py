"""Rebuild tests/vectors/device.json (docs/protocol/device.md).

    .venv/bin/python tests/vectors/generate_device_vectors.py          # rewrite the file
    .venv/bin/python tests/vectors/generate_device_vectors.py --check  # exit 1 if stale

Like the envelope generator, this is a second, deliberately plain implementation of the spec
built on the primitives alone (nothing imported from `atopos`): key derivation, device code,
proofs, recovery phrase (BIP39 written out here, with the `mnemonic` package's English word
list). Everything is derived from fixed labels, so the output is identical on every run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = Path(__file__).resolve().parent
PATH = HERE / "device.json"


def stream(label: str, size: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"atopos device vectors/{label}/{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def hkdf(ikm: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(ikm)


def pkcs8(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def bip39_words() -> list[str]:
    import mnemonic

    words = (Path(mnemonic.__file__).parent / "wordlist" / "english.txt").read_text().split()
    assert len(words) == 2048
    return words


def bip39(entropy: bytes) -> str:
    """BIP39: entropy || the first len/32 bits of its SHA-256, 11 bits per word."""
    checksum_bits = len(entropy) * 8 // 32
    bits = int.from_bytes(entropy, "big") << checksum_bits
    bits |= hashlib.sha256(entropy).digest()[0] >> (8 - checksum_bits)
    count = (len(entropy) * 8 + checksum_bits) // 11
    words = bip39_words()
    return " ".join(words[(bits >> (11 * (count - 1 - i))) & 0x7FF] for i in range(count))


class Device:
    def __init__(self, name: str) -> None:
        self.name = name
        self.seed = stream(f"{name}/seed", 32)
        self.ed25519_private = hkdf(self.seed, b"atopos/device/v1/ed25519")
        self.x25519_private = hkdf(self.seed, b"atopos/device/v1/x25519")
        self.signing = Ed25519PrivateKey.from_private_bytes(self.ed25519_private)
        self.sealing = X25519PrivateKey.from_private_bytes(self.x25519_private)
        self.ed25519_public = self.signing.public_key().public_bytes_raw()
        self.x25519_public = self.sealing.public_key().public_bytes_raw()
        self.checksum = hashlib.sha256(
            b"atopos/device-code/v1\x00" + self.ed25519_public + self.x25519_public
        ).digest()[:4]
        self.code = "atd1-" + b64url(self.ed25519_public + self.x25519_public + self.checksum)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seed": self.seed.hex(),
            "ed25519_private": self.ed25519_private.hex(),
            "ed25519_private_pkcs8": pkcs8(self.signing).hex(),
            "ed25519_public": self.ed25519_public.hex(),
            "x25519_private": self.x25519_private.hex(),
            "x25519_private_pkcs8": pkcs8(self.sealing).hex(),
            "x25519_public": self.x25519_public.hex(),
            "checksum": self.checksum.hex(),
            "device_code": self.code,
            "recovery_phrase": bip39(self.seed),
        }


def proof_message(secret_id: bytes, challenge: str) -> bytes:
    return b"atopos/device-proof/v1\x00" + secret_id + challenge.encode("utf-8")


def build() -> str:
    device_a, device_b = Device("device-a"), Device("device-b")
    secret_1 = stream("secret-1/id", 16)
    secret_2 = stream("secret-2/id", 16)
    # Challenges are opaque server tokens (docs/protocol/access.md); any text is signed as
    # its UTF-8 bytes.
    challenge_1 = b64url(stream("challenge-1", 58))
    challenge_2 = b64url(stream("challenge-2", 58))

    proofs = []
    for name, device, secret_id, challenge in [
        ("a-secret-1-challenge-1", device_a, secret_1, challenge_1),
        ("a-secret-1-challenge-2", device_a, secret_1, challenge_2),
        ("a-secret-2-challenge-1", device_a, secret_2, challenge_1),
        ("b-secret-1-challenge-1", device_b, secret_1, challenge_1),
    ]:
        message = proof_message(secret_id, challenge)
        proofs.append(
            {
                "name": name,
                "device": device.name,
                "secret_id": secret_id.hex(),
                "secret_id_b64url": b64url(secret_id),
                "challenge": challenge,
                "message": message.hex(),
                "proof": b64url(device.signing.sign(message)),
            }
        )

    by_name = {proof["name"]: proof for proof in proofs}
    a11 = by_name["a-secret-1-challenge-1"]["proof"]
    signature = base64.urlsafe_b64decode(a11 + "==")
    flipped = signature[:10] + bytes([signature[10] ^ 1]) + signature[11:]
    refusals = [
        ("replayed-for-another-challenge", device_a, secret_1, challenge_2, a11),
        ("replayed-for-another-secret", device_a, secret_2, challenge_1, a11),
        (
            "other-device",
            device_a,
            secret_1,
            challenge_1,
            by_name["b-secret-1-challenge-1"]["proof"],
        ),
        ("bit-flipped", device_a, secret_1, challenge_1, b64url(flipped)),
        ("truncated", device_a, secret_1, challenge_1, b64url(signature[:63])),
        ("empty", device_a, secret_1, challenge_1, ""),
        ("padded-base64", device_a, secret_1, challenge_1, a11 + "=="),
        ("standard-base64-alphabet", device_a, secret_1, challenge_1, "+" + a11[1:]),
    ]
    proof_refusals = [
        {
            "name": name,
            "ed25519_public": device.ed25519_public.hex(),
            "secret_id": secret_id.hex(),
            "challenge": challenge,
            "proof": proof,
        }
        for name, device, secret_id, challenge, proof in refusals
    ]

    code = device_a.code
    body = code[5:]
    swap = 30
    low_order_x = bytes(32)
    identity_ed = bytes([1]) + bytes(31)

    def code_of(ed: bytes, x: bytes) -> str:
        checksum = hashlib.sha256(b"atopos/device-code/v1\x00" + ed + x).digest()[:4]
        return "atd1-" + b64url(ed + x + checksum)

    def replaced(index: int, char: str) -> str:
        return code[:index] + char + code[index + 1 :]

    typo_index = 40
    typo = "B" if code[typo_index] != "B" else "C"
    # 68 bytes leave 2 unused bits in the last character; setting them is a second spelling.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(code[-1])
    assert last & 3 == 0
    invalid_codes = [
        ("no-prefix", body, "prefix"),
        ("upper-case-prefix", "ATD1-" + body, "prefix"),
        ("future-version", "atd2-" + body, "prefix"),
        ("one-character-short", code[:-1], "length"),
        ("one-character-long", code + "A", "length"),
        ("split-by-a-space", code[:50] + " " + code[50:-1], "encoding"),
        ("standard-base64", replaced(20, "+"), "encoding"),
        ("padding-character", replaced(95, "="), "encoding"),
        ("non-canonical-last-character", code[:-1] + alphabet[last | 1], "encoding"),
        ("typo", replaced(typo_index, typo), "checksum"),
        (
            "swapped-characters",
            code[:swap] + code[swap + 1] + code[swap] + code[swap + 2 :],
            "checksum",
        ),
        ("ed25519-small-order", code_of(identity_ed, device_a.x25519_public), "keys"),
        ("x25519-low-order", code_of(device_a.ed25519_public, low_order_x), "keys"),
    ]
    assert code[swap] != code[swap + 1]

    document = {
        "devices": [device_a.as_json(), device_b.as_json()],
        "proofs": proofs,
        "proof_refusals": proof_refusals,
        "invalid_codes": [
            {"name": name, "code": text, "error": error} for name, text, error in invalid_codes
        ],
        # Public keys a server or a code parser must refuse (device.md, section 3).
        "invalid_ed25519_public_keys": [
            {"name": "identity (order 1)", "key": identity_ed.hex()},
            {"name": "order 2", "key": "ec" + "ff" * 30 + "7f"},
            {"name": "order 4", "key": "00" * 32},
            {
                "name": "order 8",
                "key": "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
            },
            {"name": "y = p, not canonical", "key": "ed" + "ff" * 30 + "7f"},
            {"name": "x = 0 with the sign bit set", "key": "01" + "00" * 30 + "80"},
            {"name": "not on the curve (y = 2)", "key": "02" + "00" * 31},
            {"name": "31 bytes", "key": device_a.ed25519_public[:31].hex()},
        ],
        "invalid_x25519_public_keys": [
            {"name": "u = 0", "key": "00" * 32},
            {"name": "u = 1", "key": "01" + "00" * 31},
            {
                "name": "order 8",
                "key": "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
            },
            {"name": "u = p - 1", "key": "ec" + "ff" * 30 + "7f"},
            {"name": "u = p, not canonical", "key": "ed" + "ff" * 30 + "7f"},
            {
                "name": "top bit set",
                "key": (
                    device_a.x25519_public[:31] + bytes([device_a.x25519_public[31] | 0x80])
                ).hex(),
            },
        ],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = build()
    if "--check" in argv:
        if not PATH.exists() or PATH.read_text(encoding="utf-8") != text:
            print("stale: device.json", file=sys.stderr)
            return 1
        return 0
    PATH.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
