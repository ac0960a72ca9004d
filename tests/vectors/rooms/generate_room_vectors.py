"""Rebuild the room protocol vectors in this directory (docs/protocol/rooms.md, section 16).

    .venv/bin/python tests/vectors/rooms/generate_room_vectors.py          # rewrite the files
    .venv/bin/python tests/vectors/rooms/generate_room_vectors.py --check  # exit 1 if stale

key_schedule, sealing, ratchet, messages, commits and safety are computed by a second,
deliberately plain implementation of the spec written here on the primitives alone (nothing
imported from `atopos`), so the reference code is checked against the document, not against
itself. transcript.json is a recording of the reference implementation (a three-member room
on the in-memory relay double, every random byte from the seeded stream below): a second
implementation replays the relay's frames into its member and must send the same frames
and reach the same safety codes.

Every random value is `stream(label)`: SHA-256("atopos room vectors/{label}/{counter}")
for counter = 0, 1, ... concatenated and cut to size.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def stream(label: str, size: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"atopos room vectors/{label}/{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def hkdf(ikm: bytes, salt: bytes | None, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def mac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def ed_public(seed: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()


def ed_sign(seed: bytes, message: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).sign(message)


def x_public(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def padme(length: int) -> int:
    if length < 2:
        return length
    exponent = length.bit_length() - 1
    mantissa_bits = exponent.bit_length()
    mask = (1 << (exponent - mantissa_bits)) - 1
    return (length + mask) & ~mask


def dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


# -- sections 4.1-4.6 ------------------------------------------------------------------------

KINDS = {
    "link": (1, b"atopos/room/v1/join-auth"),
    "invite": (2, b"atopos/room/v1/invite-auth"),
    "creator": (3, b"atopos/room/v1/creator-auth"),
}


def sealed_name(metadata_key: bytes, name: str, aad: bytes, nonce: bytes) -> bytes:
    raw = name.encode("utf-8")
    padded = struct.pack(">H", len(raw)) + raw + bytes(126 - len(raw))
    return nonce + AESGCM(metadata_key).encrypt(nonce, padded, aad)


def key_schedule() -> dict[str, Any]:
    cases = []
    for number, name in enumerate(["Plans", "Ünïcødé ☕", ""]):
        label = f"schedule/{number}"
        room_id = stream(label + "/room_id", 16)
        s_link = stream(label + "/s_link", 32)
        s_relay = stream(label + "/s_relay", 32)
        secrets = {
            "link": s_link,
            "creator": stream(label + "/creator", 32),
            "invite": stream(label + "/invite", 32),
        }
        challenge = stream(label + "/challenge", 32)
        proofs = {}
        for kind, (byte, info) in KINDS.items():
            seed = hkdf(secrets[kind], room_id, info)
            message = b"atopos/room/v1/join-proof\x00" + bytes([byte]) + room_id + challenge
            proofs[kind] = {
                "seed": b64(seed),
                "verifier": b64(ed_public(seed)),
                "message": b64(message),
                "sig": b64(ed_sign(seed, message)),
            }
        creator_seed = hkdf(secrets["creator"], room_id, KINDS["creator"][1])
        end_message = b"atopos/room/v1/end-proof\x00" + room_id + challenge
        invite_key = hkdf(secrets["invite"], room_id, b"atopos/room/v1/invite-seal")
        root = hkdf(s_link + s_relay, room_id, b"atopos/room/v1/root")
        member_auth_key = hkdf(root, room_id, b"atopos/room/v1/member-auth")
        metadata_key = hkdf(root, room_id, b"atopos/room/v1/metadata")
        sign_key = ed_public(stream(label + "/member sign", 32))
        seal_key = x_public(stream(label + "/member seal", 32))
        profile_aad = b"atopos/room/v1/profile\x00" + room_id + sign_key
        profile = sealed_name(metadata_key, "bob", profile_aad, stream(label + "/pnonce", 12))
        auth_message = (
            b"atopos/room/v1/member-auth\x00" + room_id + challenge + sign_key + seal_key + profile
        )
        flags = number % 4  # knock = 1, invite-only = 2
        name_aad = b"atopos/room/v1/room-name\x00" + room_id + bytes([flags])
        cases.append(
            {
                "room_id": b64(room_id),
                "s_link": b64(s_link),
                "s_relay": b64(s_relay),
                "creator_secret": b64(secrets["creator"]),
                "invite_secret": b64(secrets["invite"]),
                "challenge": b64(challenge),
                "proofs": proofs,
                "end_proof": b64(ed_sign(creator_seed, end_message)),
                "sealed_link": b64(AESGCM(invite_key).encrypt(bytes(12), s_link, room_id)),
                "room_secret": b64(root),
                "member_auth_key": b64(member_auth_key),
                "metadata_key": b64(metadata_key),
                "epoch_base": b64(hkdf(root, room_id, b"atopos/room/v1/epoch-base")),
                "room_name": name,
                "knock": bool(flags & 1),
                "invite_only": bool(flags & 2),
                "name_nonce": b64(stream(label + "/nonce", 12)),
                "sealed_room_name": b64(
                    sealed_name(metadata_key, name, name_aad, stream(label + "/nonce", 12))
                ),
                "member": {
                    "sign_key": b64(sign_key),
                    "seal_key": b64(seal_key),
                    "name": "bob",
                    "profile_nonce": b64(stream(label + "/pnonce", 12)),
                    "profile": b64(profile),
                    "auth": b64(mac(member_auth_key, auth_message)),
                },
            }
        )
    return {
        "description": "rooms.md sections 4.1-4.6: proof keys and proofs, invite seal, room "
        "secret and its keys, sealed names, member auth. All binary values base64url.",
        "cases": cases,
    }


# -- section 5 ---------------------------------------------------------------------------------


def seal_aad(room_id: bytes, epoch: int, index: int, roster_digest: bytes) -> bytes:
    return b"atopos/room/v1/seal\x00" + room_id + struct.pack(">QI", epoch, index) + roster_digest


def seal(
    recipient: bytes, secret: bytes, ephemeral_private: bytes, aad: bytes
) -> tuple[bytes, bytes]:
    ephemeral = X25519PrivateKey.from_private_bytes(ephemeral_private)
    ephemeral_public = ephemeral.public_key().public_bytes_raw()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient))
    key = hkdf(shared, ephemeral_public + recipient, b"atopos/room/v1/seal")
    return ephemeral_public, AESGCM(key).encrypt(bytes(12), secret, aad)


def sealing() -> dict[str, Any]:
    cases = []
    for number in range(3):
        label = f"seal/{number}"
        recipient_private = stream(label + "/recipient", 32)
        room_id = stream(label + "/room", 16)
        digest = stream(label + "/roster", 32)
        aad = seal_aad(room_id, number + 1, number * 7, digest)
        secret = stream(label + "/secret", 32)
        ephemeral_private = stream(label + "/ephemeral", 32)
        ephemeral_public, sealed = seal(x_public(recipient_private), secret, ephemeral_private, aad)
        cases.append(
            {
                "recipient_private": b64(recipient_private),
                "recipient_public": b64(x_public(recipient_private)),
                "room_id": b64(room_id),
                "epoch": number + 1,
                "index": number * 7,
                "roster_hash": b64(digest),
                "aad": b64(aad),
                "epoch_secret": b64(secret),
                "ephemeral_private": b64(ephemeral_private),
                "ephemeral_public": b64(ephemeral_public),
                "sealed": b64(sealed),
                "invalid_sealed": [
                    b64(sealed[:-1] + bytes([sealed[-1] ^ 1])),
                    b64(sealed[:-1]),
                ],
            }
        )
    return {
        "description": "rooms.md section 5: an epoch secret sealed to one member; each "
        "invalid_sealed must fail to open.",
        "cases": cases,
    }


# -- section 8 ---------------------------------------------------------------------------------


def chain_start(epoch_secret: bytes, room_id: bytes, epoch: int, sender: int) -> bytes:
    return hkdf(epoch_secret, room_id, b"atopos/room/v1/sender" + struct.pack(">QI", epoch, sender))


def message_keys(chain_key: bytes, count: int) -> list[tuple[bytes, bytes, bytes]]:
    out = []
    for _ in range(count):
        material = mac(chain_key, b"\x01")
        chain_key = mac(chain_key, b"\x02")
        okm = hkdf(material, None, b"atopos/room/v1/message-key", 44)
        out.append((material, okm[:32], okm[32:]))
    return out


def ratchet() -> dict[str, Any]:
    cases = []
    for number in range(2):
        label = f"ratchet/{number}"
        epoch_secret = stream(label + "/epoch_secret", 32)
        room_id = stream(label + "/room", 16)
        epoch, sender = 3 + number, 2 * number
        start = chain_start(epoch_secret, room_id, epoch, sender)
        cases.append(
            {
                "epoch_secret": b64(epoch_secret),
                "room_id": b64(room_id),
                "epoch": epoch,
                "sender": sender,
                "chain_key_0": b64(start),
                "epoch_link": b64(hkdf(epoch_secret, room_id, b"atopos/room/v1/epoch-link")),
                "confirm_key": b64(hkdf(epoch_secret, room_id, b"atopos/room/v1/confirm")),
                "steps": [
                    {"counter": i, "material": b64(m), "key": b64(k), "nonce": b64(n)}
                    for i, (m, k, n) in enumerate(message_keys(start, 5))
                ],
            }
        )
    return {"description": "rooms.md section 8.1: sender chains and message keys.", "cases": cases}


def messages() -> dict[str, Any]:
    cases = []
    for number, text in enumerate(["", "hi", "x" * 480, "y" * 492, "é" * 700, "z" * 16000]):
        label = f"message/{number}"
        room_id = stream(label + "/room", 16)
        epoch, sender, counter = 2, 1, number
        key, nonce = stream(label + "/key", 32), stream(label + "/nonce", 12)
        body = json.dumps(
            {"type": "text", "text": text}, ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8")
        framed = struct.pack(">I", len(body)) + body
        padded = framed + bytes(padme(max(len(framed), 512)) - len(framed))
        aad = b"atopos/room/v1/message\x00" + room_id + struct.pack(">QIQ", epoch, sender, counter)
        ct = AESGCM(key).encrypt(nonce, padded, aad)
        seed = stream(label + "/sign", 32)
        signed = (
            b"atopos/room/v1/message-sig\x00"
            + room_id
            + struct.pack(">QIQ", epoch, sender, counter)
            + ct
        )
        cases.append(
            {
                "room_id": b64(room_id),
                "epoch": epoch,
                "sender": sender,
                "counter": counter,
                "key": b64(key),
                "nonce": b64(nonce),
                "body": body.decode("utf-8"),
                "padded_length": len(padded),
                "aad": b64(aad),
                "ct": b64(ct),
                "sign_seed": b64(seed),
                "sign_key": b64(ed_public(seed)),
                "sig": b64(ed_sign(seed, signed)),
            }
        )
    return {
        "description": "rooms.md section 8.2: padded, encrypted and signed message bodies "
        "(Padmé buckets from 512 bytes up).",
        "cases": cases,
    }


# -- sections 6, 7 and 9 -----------------------------------------------------------------------


def commits() -> dict[str, Any]:
    label = "commit"
    room_id = stream(label + "/room", 16)
    members = []
    for index in (0, 3, 4):
        sign_seed = stream(f"{label}/sign/{index}", 32)
        seal_private = stream(f"{label}/seal/{index}", 32)
        members.append(
            {
                "index": index,
                "identity": ed_public(sign_seed),
                "sign_key": ed_public(sign_seed),
                "seal_key": x_public(seal_private),
                "profile": stream(f"{label}/profile/{index}", 156),
                "sign_seed": sign_seed,
                "seal_private": seal_private,
            }
        )
    roster_digest = sha(
        b"atopos/room/v1/roster\x00"
        + struct.pack(">I", 3)
        + b"".join(
            struct.pack(">I", m["index"])
            + m["identity"]
            + m["sign_key"]
            + m["seal_key"]
            + m["profile"]
            for m in members
        )
    )
    identity_digest = sha(
        b"atopos/room/v1/identities\x00"
        + struct.pack(">I", 3)
        + b"".join(struct.pack(">I", m["index"]) + m["identity"] for m in members)
    )
    joiner = members[2]
    nonce, auth = stream(label + "/nonce", 32), stream(label + "/auth", 32)
    admission = stream(label + "/admission", 64)
    joins_digest = sha(
        b"atopos/room/v1/joins\x00"
        + struct.pack(">I", 1)
        + struct.pack(">I", joiner["index"])
        + joiner["sign_key"]
        + joiner["seal_key"]
        + nonce
        + auth
        + struct.pack(">H", 156)
        + joiner["profile"]
        + b"\x01"
        + struct.pack(">I", 0)
        + admission
    )
    epoch = 7
    previous_link = stream(label + "/previous_link", 32)
    fresh = stream(label + "/fresh", 32)
    epoch_secret = hkdf(
        fresh,
        previous_link,
        b"atopos/room/v1/epoch" + room_id + struct.pack(">Q", epoch) + roster_digest,
    )
    sealed = []
    for m in members[1:]:
        ephemeral_private = stream(f"{label}/ephemeral/{m['index']}", 32)
        ephemeral_public, box = seal(
            m["seal_key"],
            epoch_secret,
            ephemeral_private,
            seal_aad(room_id, epoch, m["index"], roster_digest),
        )
        sealed.append(
            {
                "index": m["index"],
                "ephemeral_private": b64(ephemeral_private),
                "ephemeral": b64(ephemeral_public),
                "secret": b64(box),
            }
        )
    sealed_digest = sha(
        b"atopos/room/v1/sealed\x00"
        + struct.pack(">I", len(sealed))
        + b"".join(
            struct.pack(">I", s["index"])
            + base64.urlsafe_b64decode(s["ephemeral"] + "=")
            + base64.urlsafe_b64decode(s["secret"] + "==")
            for s in sealed
        )
    )
    transcript = stream(label + "/transcript", 32)
    membership = stream(label + "/membership", 32)
    committer = members[0]
    signing_input = (
        b"atopos/room/v1/commit\x00"
        + room_id
        + struct.pack(">QIB", epoch, 0, 2)
        + transcript
        + membership
        + roster_digest
        + joins_digest
        + sealed_digest
    )
    member_auth_key = stream(label + "/member_auth_key", 32)
    transcript_next = sha(b"atopos/room/v1/transcript\x00" + signing_input)
    confirm_key = hkdf(epoch_secret, room_id, b"atopos/room/v1/confirm")
    membership_next = sha(
        b"atopos/room/v1/membership\x00" + membership + struct.pack(">Q", epoch) + identity_digest
    )
    membership_key = hkdf(previous_link, room_id, b"atopos/room/v1/membership-tag")
    return {
        "description": "rooms.md sections 6-7: a change commit at epoch 7 by index 0 adding "
        "index 4 (admitted by 0) to a roster of 0, 3, 4; reason byte 2. The member tag is "
        "keyed by previous_epoch_link (epoch_link[6]).",
        "room_id": b64(room_id),
        "epoch": epoch,
        "roster": [
            {k: (b64(v) if isinstance(v, bytes) else v) for k, v in m.items()} for m in members
        ],
        "roster_hash": b64(roster_digest),
        "identity_hash": b64(identity_digest),
        "join": {
            "index": joiner["index"],
            "nonce": b64(nonce),
            "auth": b64(auth),
            "admitted_by": 0,
            "admission": b64(admission),
        },
        "joins_hash": b64(joins_digest),
        "previous_epoch_link": b64(previous_link),
        "fresh": b64(fresh),
        "epoch_secret": b64(epoch_secret),
        "sealed": sealed,
        "sealed_hash": b64(sealed_digest),
        "transcript": b64(transcript),
        "membership": b64(membership),
        "signing_input": b64(signing_input),
        "sig": b64(ed_sign(committer["sign_seed"], signing_input)),
        "member_auth_key": b64(member_auth_key),
        "room_auth": b64(mac(member_auth_key, b"atopos/room/v1/commit-auth\x00" + signing_input)),
        "membership_key": b64(membership_key),
        "member_tag": b64(mac(membership_key, b"atopos/room/v1/member-tag\x00" + signing_input)),
        "transcript_after": b64(transcript_next),
        "confirm": b64(mac(confirm_key, transcript_next)),
        "membership_after": b64(membership_next),
        "transcript_start": b64(sha(b"atopos/room/v1/transcript-start\x00" + room_id)),
        "membership_start": b64(sha(b"atopos/room/v1/membership-start\x00" + room_id)),
    }


def safety() -> dict[str, Any]:
    cases = []
    for number in range(5):
        room_id = stream(f"safety/{number}/room", 16)
        membership = stream(f"safety/{number}/membership", 32)
        digest = hashlib.sha512(b"atopos/room/v1/safety\x00" + room_id + membership).digest()
        groups = [int.from_bytes(digest[5 * i : 5 * i + 5], "big") % 100000 for i in range(12)]
        cases.append(
            {
                "room_id": b64(room_id),
                "membership": b64(membership),
                "code": " ".join(f"{group:05d}" for group in groups),
            }
        )
    return {
        "description": "rooms.md section 9: safety codes (12 groups of 5 digits from SHA-512).",
        "cases": cases,
    }


# -- section 11.4 ------------------------------------------------------------------------------


def published_seeds_key(epoch_link: bytes, room_id: bytes, index: int) -> bytes:
    return hkdf(epoch_link, room_id, b"atopos/room/v1/published-seeds" + struct.pack(">I", index))


def published_seeds_aad(room_id: bytes, epoch: int, index: int) -> bytes:
    return b"atopos/room/v1/published-seeds\x00" + room_id + struct.pack(">QI", epoch, index)


def seal_seeds(
    epoch_link: bytes, room_id: bytes, epoch: int, index: int, seeds: list[bytes], nonce: bytes
) -> bytes:
    key = published_seeds_key(epoch_link, room_id, index)
    aad = published_seeds_aad(room_id, epoch, index)
    return nonce + AESGCM(key).encrypt(nonce, b"".join(seeds), aad)


def published_seeds() -> dict[str, Any]:
    cases = []
    for number, (epoch, index, count) in enumerate([(1, 0, 1), (5, 2, 3), (9, 70000, 64)]):
        label = f"published-seeds/{number}"
        room_id = stream(label + "/room", 16)
        epoch_link = stream(label + "/epoch_link", 32)
        seeds = [stream(f"{label}/seed/{i}", 32) for i in range(count)]
        nonce = stream(label + "/nonce", 12)
        sealed = seal_seeds(epoch_link, room_id, epoch, index, seeds, nonce)
        cases.append(
            {
                "room_id": b64(room_id),
                "epoch": epoch,
                "index": index,
                "epoch_link": b64(epoch_link),
                "key": b64(published_seeds_key(epoch_link, room_id, index)),
                "aad": b64(published_seeds_aad(room_id, epoch, index)),
                "nonce": b64(nonce),
                "seeds": [b64(seed) for seed in seeds],
                "sealed_seeds": b64(sealed),
                "invalid": [
                    {
                        "name": "tag changed",
                        "epoch": epoch,
                        "index": index,
                        "sealed_seeds": b64(sealed[:-1] + bytes([sealed[-1] ^ 1])),
                    },
                    {
                        "name": "one byte short",
                        "epoch": epoch,
                        "index": index,
                        "sealed_seeds": b64(sealed[:-1]),
                    },
                    {
                        "name": "another epoch",
                        "epoch": epoch + 1,
                        "index": index,
                        "sealed_seeds": b64(sealed),
                    },
                    {
                        "name": "another member",
                        "epoch": epoch,
                        "index": index + 1,
                        "sealed_seeds": b64(sealed),
                    },
                ],
            }
        )
    return {
        "description": "rooms.md section 11.4: a leaving member's signing seeds sealed under "
        "its epoch's link (key = HKDF(epoch_link, salt room_id, info label || u32(index)); "
        "sealed_seeds = nonce || AES-256-GCM(key, nonce, seeds, aad)). Each `invalid` entry "
        "(opened with the case's epoch_link and room_id, and its own epoch and index) must "
        "fail to open.",
        "cases": cases,
    }


# -- frames a decoder must refuse -------------------------------------------------------------


def invalid_frames() -> dict[str, Any]:
    key, sig = b64(stream("invalid/key", 32)), b64(stream("invalid/sig", 64))
    prove = {"t": "prove", "kind": "link", "key": key, "sig": sig}
    message = {
        "t": "msg",
        "seq": 3,
        "epoch": 1,
        "sender": 0,
        "counter": 0,
        "ct": b64(stream("invalid/ct", 528)),
        "sig": sig,
    }

    commit = {
        "t": "commit",
        "seq": 4,
        "epoch": 2,
        "committer": 0,
        "reason": "update",
        "transcript": key,
        "membership": key,
        "roster": [],
        "joins": [],
        "sealed": [],
        "room_auth": key,
        "member_tag": key,
        "confirm": key,
        "sig": sig,
    }
    client_commit = {k: v for k, v in commit.items() if k != "seq"}

    def sealed(count: int, extra: int = 0) -> str:
        return b64(stream("invalid/sealed_seeds", 12 + 32 * count + 16 + extra))

    leave = {"t": "leave", "epoch": 3, "sealed_seeds": sealed(2)}
    left = {"t": "left", "seq": 5, "index": 2, "epoch": 3, "sealed_seeds": sealed(1)}
    non_canonical = sealed(2)[:-1] + "B"  # 92 bytes: the last character carries 2 zero bits

    def text(document: Any) -> str:
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False)

    def variant(base: dict[str, Any], **changes: Any) -> str:
        document = dict(base)
        for name, value in changes.items():
            if value is KeyError:
                del document[name]
            else:
                document[name] = value
        return text(document)

    client = [
        ("valid", text(prove), None),
        ("unknown field", variant(prove, extra=1), "malformed"),
        ("missing field", variant(prove, sig=KeyError), "malformed"),
        ("unknown type", variant(prove, t="hello"), "malformed"),
        ("unknown kind", variant(prove, kind="admin"), "malformed"),
        ("key too short", variant(prove, key=key[:-1]), "malformed"),
        ("key non-canonical (trailing bits)", variant(prove, key=key[:-1] + "B"), "malformed"),
        ("key with padding", variant(prove, key=key + "="), "malformed"),
        (
            "key in standard base64",
            variant(
                prove,
                key=key.replace("-", "+").replace("_", "/")
                if ("-" in key or "_" in key)
                else "+" + key[1:],
            ),
            "malformed",
        ),
        ("key with a trailing newline", variant(prove, key=key + "\n"), "malformed"),
        ("not an object", text([prove]), "malformed"),
        ("not JSON", text(prove)[:-1], "malformed"),
        ("commit", text(client_commit), None),
        ("commit without member_tag", variant(client_commit, member_tag=KeyError), "malformed"),
        ("commit with a null member_tag", variant(client_commit, member_tag=None), "malformed"),
        ("leave", text(leave), None),
        ("leave with no epoch (publishes nothing)", text({"t": "leave"}), None),
        ("leave with 64 sealed seeds", variant(leave, sealed_seeds=sealed(64)), None),
        (
            "leave with clear signing_keys",
            text({"t": "leave", "signing_keys": [key]}),
            "malformed",
        ),
        (
            "leave with signing_keys beside sealed_seeds",
            variant(leave, signing_keys=[]),
            "malformed",
        ),
        ("leave with sealed_seeds and no epoch", variant(leave, epoch=KeyError), "malformed"),
        (
            "leave with an epoch and no sealed_seeds",
            variant(leave, sealed_seeds=KeyError),
            "malformed",
        ),
        ("leave with epoch 0", variant(leave, epoch=0), "malformed"),
        ("leave sealing no seed", variant(leave, sealed_seeds=sealed(0)), "malformed"),
        ("leave sealing 65 seeds", variant(leave, sealed_seeds=sealed(65)), "malformed"),
        (
            "leave sealing part of a seed",
            variant(leave, sealed_seeds=sealed(1, extra=1)),
            "malformed",
        ),
        (
            "leave with non-canonical sealed_seeds",
            variant(leave, sealed_seeds=non_canonical),
            "malformed",
        ),
    ]
    relay = [
        ("valid", text(message), None),
        ("float counter", text(message).replace('"counter":0', '"counter":0.0'), "malformed"),
        ("exponent counter", text(message).replace('"counter":0', '"counter":1e0'), "malformed"),
        ("negative epoch", variant(message, epoch=-1), "malformed"),
        ("epoch over 2^53-1", variant(message, epoch=2**53), "malformed"),
        ("index over 2^32-1", variant(message, sender=2**32), "malformed"),
        (
            "ciphertext under 528 bytes",
            variant(message, ct=b64(stream("invalid/ct", 525))),
            "malformed",
        ),
        (
            "ciphertext over 17424 bytes",
            variant(message, ct=b64(stream("invalid/ct", 17427))),
            "malformed",
        ),
        ("boolean as integer", variant(message, sender=True), "malformed"),
        ("string as integer", variant(message, sender="0"), "malformed"),
        ("commit", text(commit), None),
        ("commit without member_tag", variant(commit, member_tag=KeyError), "malformed"),
        ("commit with a short member_tag", variant(commit, member_tag=key[:-1]), "malformed"),
        ("left", text(left), None),
        ("left of a member that vanished", text({"t": "left", "seq": 5, "index": 2}), None),
        (
            "left with clear signing_keys",
            text({"t": "left", "seq": 5, "index": 2, "signing_keys": [key]}),
            "malformed",
        ),
        (
            "left with an empty signing_keys list",
            text({"t": "left", "seq": 5, "index": 2, "signing_keys": []}),
            "malformed",
        ),
        ("left with sealed_seeds and no epoch", variant(left, epoch=KeyError), "malformed"),
        ("left with a null epoch", variant(left, epoch=None), "malformed"),
        (
            "left sealing part of a seed",
            variant(left, sealed_seeds=sealed(2, extra=2)),
            "malformed",
        ),
    ]
    return {
        "description": "rooms.md section 10: frames a decoder must refuse with the given "
        "error code (null: must be accepted). `client` frames are what a relay decodes, "
        "`relay` frames what a member decodes.",
        "client": [{"name": n, "frame": f, "error": e} for n, f, e in client],
        "relay": [{"name": n, "frame": f, "error": e} for n, f, e in relay],
    }


# -- the recorded room --------------------------------------------------------------------------


def transcript() -> dict[str, Any]:
    """A three-member room recorded from the reference implementation (see module doc)."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "src"))
    from tests.rooms_relay_double import RelayDouble

    from atopos.protocol.room_creation import make_room
    from atopos.protocol.room_member import RoomMember

    class Seeded:
        def __init__(self, label: str) -> None:
            self.label, self.counter = label, 0

        def __call__(self, size: int) -> bytes:
            out = b""
            while len(out) < size:
                out += hashlib.sha256(
                    f"atopos room vectors/{self.label}/{self.counter}".encode()
                ).digest()
                self.counter += 1
            return out[:size]

    import msgspec

    new = make_room("https://rooms.example", Seeded("transcript/create"), name="Plans")
    relay = RelayDouble(new.creation, Seeded("transcript/relay"))
    names = ["alice", "bob", "carol"]
    links = {"alice": new.creator_link, "bob": new.member_link, "carol": new.member_link}
    members = {name: RoomMember(links[name], name, Seeded(f"transcript/{name}")) for name in names}
    name_of = {id(member): name for name, member in members.items()}
    steps: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    sent: dict[str, list[str]] = {name: [] for name in names}
    deliver, handle = relay.deliver, relay.handle

    def recording_deliver(connection: Any, text: str) -> None:
        if not connection.is_closed:
            steps[name_of[id(connection.member)]].append({"receive": text})
        deliver(connection, text)

    def recording_handle(connection: Any, text: str) -> None:
        sent[name_of[id(connection.member)]].append(text)
        handle(connection, text)

    relay.deliver = recording_deliver  # type: ignore[method-assign]
    relay.handle = recording_handle  # type: ignore[method-assign]

    def command(name: str, method: str, *args: Any) -> None:
        steps[name].append({"command": method, "args": list(args)})
        getattr(members[name], method)(*args)
        relay.pump()

    connections = {}
    for name in names:
        connections[name] = relay.connect(members[name])
        relay.pump()
    for name in names:
        command(name, "send_text", f"hello from {name}")
    command("bob", "update", 0)
    command("alice", "send_text", "after bob's update")
    command("carol", "leave")
    command("bob", "send_text", "carol left")
    return {
        "description": "rooms.md section 16: a recorded room. For each member: the link it "
        "used, the label of its random stream (stream(label) as in the generator), its steps "
        "in order (a frame the relay sent it, or a command of its user: send_text, update "
        "with now, leave), every frame it sent, the texts it read and its last safety code. "
        "Replaying the steps into a member built from the same link, display name and random "
        "stream must produce exactly `sent`, the same texts and the same safety code.",
        "creation": json.loads(msgspec.json.encode(new.creation)),
        "members": [
            {
                "name": name,
                "link": links[name].text(),
                "random_label": f"transcript/{name}",
                "steps": steps[name],
                "sent": sent[name],
                "texts": [
                    [e.sender, e.text]
                    for e in connections[name].events
                    if type(e).__name__ == "MessageReceived"
                ],
                "safety_code": connections[name].member.safety_code,
            }
            for name in names
        ],
    }


FILES = {
    "key_schedule.json": key_schedule,
    "sealing.json": sealing,
    "ratchet.json": ratchet,
    "messages.json": messages,
    "commits.json": commits,
    "safety.json": safety,
    "published_seeds.json": published_seeds,
    "invalid_frames.json": invalid_frames,
    "transcript.json": transcript,
}


def main(argv: list[str]) -> int:
    stale = []
    for name, build in FILES.items():
        text = dump(build())
        path = HERE / name
        if "--check" in argv:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print("stale: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
