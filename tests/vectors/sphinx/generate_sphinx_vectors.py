"""Rebuild tests/vectors/sphinx/*.json (docs/protocol/sphinx.md, "Test vectors").

    .venv/bin/python tests/vectors/sphinx/generate_sphinx_vectors.py          # rewrite the files
    .venv/bin/python tests/vectors/sphinx/generate_sphinx_vectors.py --check  # exit 1 if stale

A second, deliberately plain implementation of the document on the primitives alone (nothing
imported from `atopos`), so the reference code is checked against the spec, not against itself.
Every random value comes from `Stream(label)`: SHA-256("atopos sphinx vectors/{label}/{counter}")
for counter = 0, 1, ... concatenated, drawn in the order the spec lists the sender's draws.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = Path(__file__).resolve().parent
R, H, BETA = 5, 69, 5 * 69
HEADER, PAYLOAD = 32 + BETA + 32, 16 + 2048
RELAY, DELIVER, DELIVER_REPLY = 1, 2, 3


class Stream:
    """The seeded byte stream a test vector's sender draws from."""

    def __init__(self, label: str) -> None:
        self.label, self.counter, self.buffer = label, 0, b""

    def __call__(self, size: int) -> bytes:
        while len(self.buffer) < size:
            block = f"atopos sphinx vectors/{self.label}/{self.counter}".encode()
            self.buffer += hashlib.sha256(block).digest()
            self.counter += 1
        out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out


def hkdf(ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(ikm)


def ctr(key: bytes, data: bytes) -> bytes:
    return Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor().update(data)


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=False))


def hmac256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def lioness(key: bytes, block: bytes, *, decrypt: bool) -> bytes:
    k = [key[0:32], key[32:64], key[64:96], key[96:128]]
    left, right = block[:32], block[32:]
    rounds = ["S1", "H2", "S3", "H4"]
    for step in reversed(rounds) if decrypt else rounds:
        if step[0] == "S":
            right = ctr(xor(left, k[int(step[1]) - 1]), right)
        else:
            left = xor(left, hmac256(k[int(step[1]) - 1], right))
    return left + right


def hop_keys(shared: bytes) -> dict[str, bytes]:
    okm = hkdf(shared, b"atopos sphinx v1 hop keys", 256)
    return {"header": okm[:32], "mac": okm[32:64], "payload": okm[64:192],
            "blinding": okm[192:224], "replay_tag": okm[224:]}  # fmt: skip


def x25519(scalar: bytes, point: bytes) -> bytes:
    private = X25519PrivateKey.from_private_bytes(scalar)
    return private.exchange(X25519PublicKey.from_public_bytes(point))


def header(route: list[dict[str, Any]], command: int, final: bytes, rand: Stream) -> Any:
    x = rand(32)
    alpha = X25519PrivateKey.from_private_bytes(x).public_key().public_bytes_raw()
    keys, scalars = [], [x]
    for hop in route:
        shared = x25519(x, hop["public"])
        for b in scalars[1:]:
            shared = x25519(b, shared)
        keys.append(hop_keys(shared))
        scalars.append(keys[-1]["blinding"])
    n = len(route)
    streams = [ctr(k["header"], bytes(BETA + H)) for k in keys]
    filler = b""
    for i in range(1, n):
        filler = xor(filler + bytes(H), streams[i - 1][BETA + H - i * H :])
    routing = bytes([command]) + final + route[-1]["delay_ms"].to_bytes(4, "big") + bytes(32)
    beta = xor(routing + rand(BETA - len(filler) - H), streams[-1]) + filler
    gamma = hmac256(keys[-1]["mac"], beta)
    for i in range(n - 2, -1, -1):
        nxt = route[i + 1]["address"]
        routing = bytes([RELAY]) + nxt + route[i]["delay_ms"].to_bytes(4, "big") + gamma
        beta = xor(routing + beta[: BETA - H], streams[i])
        gamma = hmac256(keys[i]["mac"], beta)
    return alpha + beta + gamma, keys


def node(index: int) -> dict[str, Any]:
    private = Stream(f"node/{index}")(32)
    public = X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()
    address = hashlib.sha256(b"address" + public).digest()
    return {"private": private, "public": public, "address": address, "delay_ms": 37 * index}


def hops_json(route: list[dict[str, Any]], keys: list[dict[str, bytes]], packet: bytes) -> Any:
    """What each hop computes, written from the spec's processing steps."""
    out = []
    for i, hop in enumerate(route):
        alpha, beta, payload = packet[:32], packet[32 : 32 + BETA], packet[HEADER:]
        k = hop_keys(x25519(hop["private"], alpha))
        assert k == keys[i]
        opened = xor(beta + bytes(H), ctr(k["header"], bytes(BETA + H)))
        payload = lioness(k["payload"], payload, decrypt=True)
        entry = {"packet_in": packet.hex(), "replay_tag": k["replay_tag"].hex(),
                 "command": opened[0], "address": opened[1:33].hex(),
                 "delay_ms": int.from_bytes(opened[33:37], "big")}  # fmt: skip
        if opened[0] == RELAY:
            packet = x25519(k["blinding"], alpha) + opened[H:] + opened[37:69] + payload
            entry["packet_out"] = packet.hex()
        else:
            entry["payload_out"] = payload.hex()
        out.append(entry)
    return out


def route_json(route: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: (v.hex() if isinstance(v, bytes) else v) for k, v in hop.items()} for hop in route]


def forward(hops: int) -> dict[str, Any]:
    route = [node(i) for i in range(hops)]
    rand = Stream(f"forward/{hops}")
    recipient, message = Stream("recipient")(32), Stream(f"message/{hops}")(2048)
    head, keys = header(route, DELIVER, recipient, rand)
    payload = bytes(16) + message
    for k in reversed(keys):
        payload = lioness(k["payload"], payload, decrypt=False)
    return {"random_label": f"forward/{hops}", "route": route_json(route),
            "recipient": recipient.hex(), "message": message.hex(),
            "hops": hops_json(route, keys, head + payload)}  # fmt: skip


def surb() -> dict[str, Any]:
    route = [node(i) for i in range(3)]
    rand = Stream("surb")
    surb_id, message = Stream("surb id")(32), Stream("reply message")(2048)
    head, keys = header(route, DELIVER_REPLY, surb_id, rand)
    payload_key = hkdf(rand(32), b"atopos sphinx v1 surb payload key", 128)
    packet = head + lioness(payload_key, bytes(16) + message, decrypt=False)
    return {"random_label": "surb", "route": route_json(route), "surb_id": surb_id.hex(),
            "header": head.hex(), "payload_key": payload_key.hex(), "message": message.hex(),
            "hop_payload_keys": [k["payload"].hex() for k in keys],
            "hops": hops_json(route, keys, packet)}  # fmt: skip


def lioness_vectors() -> list[dict[str, str]]:
    out = []
    for size in (33, 64, 2064):
        key, block = Stream(f"lioness key/{size}")(128), Stream(f"lioness block/{size}")(size)
        cipher = lioness(key, block, decrypt=False)
        assert lioness(key, cipher, decrypt=True) == block
        out.append({"key": key.hex(), "plaintext": block.hex(), "ciphertext": cipher.hex()})
    return out


def build() -> dict[str, str]:
    files = {
        "forward.json": {"3_hops": forward(3), "5_hops": forward(5)},
        "surb.json": surb(),
        "lioness.json": lioness_vectors(),
    }
    return {name: json.dumps(value, indent=1) + "\n" for name, value in files.items()}


def main() -> int:
    files = build()
    if "--check" in sys.argv[1:]:
        stale = [n for n, text in files.items() if (HERE / n).read_text() != text]
        for name in stale:
            print(f"stale: tests/vectors/sphinx/{name}", file=sys.stderr)
        return 1 if stale else 0
    for name, text in files.items():
        (HERE / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
