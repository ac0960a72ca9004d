"""Rebuild tests/vectors/requests.json (secret requests, docs/protocol/requests.md).

    .venv/bin/python tests/vectors/generate_request_vectors.py          # rewrite the file
    .venv/bin/python tests/vectors/generate_request_vectors.py --check  # exit 1 if stale

A plain implementation of the page on top of `cryptography` (nothing imported from
`atopos`): for a request key, the fill token (HKDF-SHA256, info "atopos/request-fill/v1"),
the hash the server keeps of it, the access key of the filled secret (HKDF-SHA256, info
"atopos/access-key/v1", as an Ed25519 private key), and the request and pickup links built
with device-a of device.json. Invalid links name the part that is damaged.
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
PATH = HERE / "requests.json"
SERVER = "https://atopos.example"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def hkdf(ikm: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(ikm)


def keys(name: str, request_key: bytes) -> dict[str, Any]:
    fill_token = hkdf(request_key, b"atopos/request-fill/v1")
    access_seed = hkdf(request_key, b"atopos/access-key/v1")
    access_key = Ed25519PrivateKey.from_private_bytes(access_seed).public_key().public_bytes_raw()
    return {
        "name": name,
        "request_key": b64url(request_key),
        "fill_token": b64url(fill_token),
        "fill_token_hash": hashlib.sha256(b"atopos/fill-token\x00" + fill_token).hexdigest(),
        "access_key": b64url(access_key),
    }


def build() -> dict[str, Any]:
    device = json.loads((HERE / "device.json").read_text(encoding="utf-8"))["devices"]
    code = next(d for d in device if d["name"] == "device-a")["device_code"]
    request_id = b64url(bytes(range(16)))
    request_key = bytes(range(32))
    token = b64url(bytes(range(100, 132)))
    key_text = b64url(request_key)
    request_link = f"{SERVER}/q/{request_id}#{key_text}.{code}"
    pickup_link = f"{SERVER}/ask/{request_id}#{key_text}.{token}"
    return {
        "keys": [
            keys("counting", request_key),
            keys("ones", b"\xff" * 32),
            keys("zeros", bytes(32)),
        ],
        "links": {
            "server": SERVER,
            "request_id": request_id,
            "request_key": key_text,
            "device_code": code,
            "request_token": token,
            "request_link": request_link,
            "pickup_link": pickup_link,
        },
        "invalid_request_links": [
            {"link": f"{SERVER}/q/{request_id}", "part": "fragment"},
            {"link": f"{SERVER}/q/{request_id}#{key_text}", "part": "fragment"},
            {"link": f"{SERVER}/q/{request_id}#{key_text[:-1]}.{code}", "part": "key"},
            {"link": f"{SERVER}/q/{request_id}#{key_text}.{code[:-1]}", "part": "device"},
            {"link": f"{SERVER}/q/{request_id}#{key_text}.{code}.x", "part": "device"},
            {"link": f"{SERVER}/q/{request_id[:-1]}#{key_text}.{code}", "part": "id"},
            {"link": f"{SERVER}/s/{request_id}#{key_text}.{code}", "part": "url"},
        ],
        "invalid_pickup_links": [
            {"link": f"{SERVER}/ask/{request_id}#{key_text}", "part": "fragment"},
            {"link": f"{SERVER}/ask/{request_id}#{key_text}.{token[:-1]}", "part": "token"},
            {"link": f"{SERVER}/ask/{request_id}#{key_text[1:]}.{token}", "part": "key"},
            {"link": f"{SERVER}/ask/new#{key_text}.{token}", "part": "id"},
        ],
    }


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
    raise SystemExit(main())
