"""Writes topology.json: signed mixnet topology documents (docs/protocol/mixnet.md), made here
with json.dumps and pyca's Ed25519 directly, not with atopos' own encoder.

Keys are fixed: the authority's Ed25519 seed is 32 bytes of 0x41, node i's id is SHA-256
("node" || i) and its X25519 public key SHA-256("key" || i) (any 32 bytes parse; a node's key
is only used when a packet is built). Run: python tests/vectors/mixnet/generate_topology_vectors.py
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

CONTEXT = b"atopos mix topology v1\x00"
AUTHORITY = Ed25519PrivateKey.from_private_bytes(b"\x41" * 32)
OTHER = Ed25519PrivateKey.from_private_bytes(b"\x42" * 32)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def node(index: int) -> dict[str, Any]:
    return {
        "id": b64(hashlib.sha256(b"node" + bytes([index])).digest()),
        "host": "127.0.0.1",
        "port": 40000 + index,
        "public_key": b64(hashlib.sha256(b"key" + bytes([index])).digest()),
        "key_epoch": 7,
    }


def body() -> dict[str, Any]:
    return {
        "version": 1,
        "serial": 3,
        "valid_from": 1_800_000_000,
        "valid_until": 1_800_003_600,
        "layers": [[node(0), node(1)], [node(2), node(3)], [node(4), node(5)]],
        "gateways": [node(6), node(7)],
    }


def document(content: dict[str, Any] | str, key: Ed25519PrivateKey = AUTHORITY) -> str:
    text = content if isinstance(content, str) else json.dumps(content, separators=(",", ":"))
    signature = key.sign(CONTEXT + text.encode())
    return json.dumps({"body": text, "signature": b64(signature)})


def changed(path: list[Any], value: Any) -> dict[str, Any]:
    content = copy.deepcopy(body())
    target: Any = content
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return content


def main() -> None:
    good = body()
    duplicate = body()
    duplicate["gateways"][1]["id"] = duplicate["layers"][0][0]["id"]
    same_key = body()
    same_key["layers"][1][0]["public_key"] = same_key["layers"][2][1]["public_key"]
    extra = body()
    extra["comment"] = "hi"
    four_layers = body()
    four_layers["layers"].append([node(8)])
    signed = json.loads(document(good))
    invalid = {
        "signed by another key": document(good, OTHER),
        "body changed after signing": json.dumps(
            {
                "body": signed["body"].replace('"serial":3', '"serial":4'),
                "signature": signed["signature"],
            }
        ),
        "unknown field": document(extra),
        "duplicate node id": document(duplicate),
        "duplicate public key": document(same_key),
        "four layers": document(four_layers),
        "empty layer": document(changed(["layers", 1], [])),
        "no gateway": document(changed(["gateways"], [])),
        "version 2": document(changed(["version"], 2)),
        "window reversed": document(changed(["valid_until"], 1_800_000_000)),
        "short id": document(changed(["layers", 0, 0, "id"], b64(bytes(31)))),
        "padded base64": document(changed(["layers", 0, 0, "public_key"], b64(bytes(32)) + "=")),
        "port 0": document(changed(["gateways", 0, "port"], 0)),
        "host with a space": document(changed(["gateways", 0, "host"], "a b")),
        "host with a control character": document(changed(["gateways", 0, "host"], "a\nb")),
        "port as a string": document(changed(["gateways", 0, "port"], "40006")),
        "body not json": document("not json"),
        "signature not base64url": json.dumps({"body": signed["body"], "signature": "!!"}),
    }
    vectors = {
        "authority_public_key": b64(AUTHORITY.public_key().public_bytes_raw()),
        "valid": {"document": document(good), "body": good, "now": 1_800_000_100},
        "expired_at": 1_800_003_600,
        "not_yet_at": 1_799_999_999,
        "invalid": invalid,
    }
    out = Path(__file__).with_name("topology.json")
    out.write_text(json.dumps(vectors, indent=1) + "\n")


if __name__ == "__main__":
    main()
