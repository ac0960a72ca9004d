"""Rebuild tests/vectors/envelope.json, envelope_invalid.json, envelope_device.json and
envelope_device_invalid.json (docs/protocol/envelope.md, docs/protocol/device.md).

    .venv/bin/python tests/vectors/generate_envelope_vectors.py          # rewrite the files
    .venv/bin/python tests/vectors/generate_envelope_vectors.py --check  # exit 1 if stale

The device-bound vectors live in files of their own so that a reader without device support
can still run the others unchanged.

The envelopes are built by a second, deliberately naive implementation written from the spec
(whole buffers, no streaming, nothing imported from `atopos`), so the vectors check the
library instead of echoing it. The same code crafts the negative vectors that only a key
holder could make (bad padding, bad metadata, wrong flags). Everything is derived from fixed
labels, so the output is identical on every run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import sys
import unicodedata
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = Path(__file__).resolve().parent
POSITIVE_PATH = HERE / "envelope.json"
NEGATIVE_PATH = HERE / "envelope_invalid.json"
DEVICE_POSITIVE_PATH = HERE / "envelope_device.json"
DEVICE_NEGATIVE_PATH = HERE / "envelope_device_invalid.json"

# Small Argon2id cost so that browsers run the vectors quickly.
TEST_ARGON2 = {"memory_kib": 1024, "iterations": 2, "lanes": 1}


def stream(label: str, size: int) -> bytes:
    """`size` deterministic bytes named by `label` (SHA-256 in counter mode)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"atopos envelope vectors/{label}/{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


# -- the reference implementation ----------------------------------------------------------


def ref_padme(length: int) -> int:
    exponent = 0
    while (1 << (exponent + 1)) <= length:
        exponent += 1
    floor_log2_exponent = 0
    while exponent and (1 << (floor_log2_exponent + 1)) <= exponent:
        floor_log2_exponent += 1
    low_bits = exponent - (floor_log2_exponent + 1)
    if exponent == 0 or low_bits <= 0:
        return length
    step = 1 << low_bits
    return -(-length // step) * step


def ref_meta(metadata: dict[str, Any]) -> bytes:
    ordered = {key: metadata[key] for key in ("kind", "name", "size", "type") if key in metadata}
    return json.dumps(ordered, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def ref_header(
    chunk_size_log2: int,
    salt: bytes,
    argon2: dict[str, int] | None,
    argon2_salt: bytes | None,
    *,
    device: bool = False,
) -> bytes:
    """The header up to the device fields (all of it when not device-bound)."""
    flags = (0 if argon2 is None else 1) | (2 if device else 0)
    header = b"ATPS" + bytes([1, 1, chunk_size_log2, flags]) + salt
    if argon2 is not None:
        assert argon2_salt is not None
        header += struct.pack(">III", argon2["memory_kib"], argon2["iterations"], argon2["lanes"])
        header += argon2_salt
    return header


def ref_keys(
    link_key: bytes,
    salt: bytes,
    passphrase: str | None,
    argon2: dict[str, int] | None,
    argon2_salt: bytes | None,
    device_secret: bytes | None = None,
) -> tuple[bytes | None, bytes, bytes]:
    passphrase_key = None
    ikm = link_key
    if passphrase is not None:
        assert argon2 is not None
        assert argon2_salt is not None
        passphrase_key = Argon2id(
            salt=argon2_salt,
            length=32,
            iterations=argon2["iterations"],
            lanes=argon2["lanes"],
            memory_cost=argon2["memory_kib"],
        ).derive(unicodedata.normalize("NFC", passphrase).encode("utf-8"))
        ikm = link_key + passphrase_key
    if device_secret is not None:
        ikm += device_secret
    okm = HKDF(algorithm=hashes.SHA256(), length=39, salt=salt, info=b"atopos/envelope/v1").derive(
        ikm
    )
    return passphrase_key, okm[:32], okm[32:]


def ref_plaintext(meta: bytes, content: bytes) -> bytes:
    unpadded = 4 + len(meta) + len(content)
    padded = ref_padme(max(unpadded, 512))
    return struct.pack(">I", len(meta)) + meta + content + bytes(padded - unpadded)


def ref_chunks(plaintext: bytes, chunk_size_log2: int) -> list[bytes]:
    size = 2**chunk_size_log2
    return [plaintext[start : start + size] for start in range(0, len(plaintext), size)]


def ref_encrypt(
    header: bytes,
    key: bytes,
    nonce_prefix: bytes,
    chunks: list[bytes],
    flags: list[int] | None = None,
) -> bytes:
    """header || AES-GCM of each chunk; `flags` overrides the last-chunk flags (negatives)."""
    if flags is None:
        flags = [0] * (len(chunks) - 1) + [1]
    aead = AESGCM(key)
    out = header
    for index, (chunk, flag) in enumerate(zip(chunks, flags, strict=True)):
        out += aead.encrypt(nonce_prefix + struct.pack(">IB", index, flag), chunk, header)
    return out


class RefDevice:
    """A device made from a seed as docs/protocol/device.md says (HKDF-SHA256, empty salt)."""

    def __init__(self, label: str) -> None:
        # The same seeds as device.json's devices, so both files describe one device-a.
        self.seed = hashlib.sha256(f"atopos device vectors/{label}/seed/0".encode()).digest()
        okm = {
            name: HKDF(
                algorithm=hashes.SHA256(),
                length=32,
                salt=None,
                info=f"atopos/device/v1/{name}".encode(),
            ).derive(self.seed)
            for name in ("ed25519", "x25519")
        }
        self.signing = Ed25519PrivateKey.from_private_bytes(okm["ed25519"])
        self.sealing = X25519PrivateKey.from_private_bytes(okm["x25519"])
        self.x25519_private = okm["x25519"]
        self.ed25519_public = self.signing.public_key().public_bytes_raw()
        self.x25519_public = self.sealing.public_key().public_bytes_raw()
        checksum = hashlib.sha256(
            b"atopos/device-code/v1\x00" + self.ed25519_public + self.x25519_public
        ).digest()[:4]
        self.code = (
            "atd1-"
            + base64.urlsafe_b64encode(self.ed25519_public + self.x25519_public + checksum)
            .rstrip(b"=")
            .decode()
        )

    def as_json(self) -> dict[str, str]:
        pkcs8 = self.sealing.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return {
            "seed": self.seed.hex(),
            "x25519_private": self.x25519_private.hex(),
            "x25519_private_pkcs8": pkcs8.hex(),
            "x25519_public": self.x25519_public.hex(),
            "ed25519_public": self.ed25519_public.hex(),
            "device_code": self.code,
        }


def ref_seal_key(shared: bytes, ephemeral_public: bytes, device_public: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=ephemeral_public + device_public,
        info=b"atopos/device-seal/v1",
    ).derive(shared)


def ref_device_seal(
    device_public: bytes, ephemeral_private: bytes, device_secret: bytes, aad: bytes
) -> dict[str, bytes]:
    ephemeral = X25519PrivateKey.from_private_bytes(ephemeral_private)
    ephemeral_public = ephemeral.public_key().public_bytes_raw()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(device_public))
    seal_key = ref_seal_key(shared, ephemeral_public, device_public)
    sealed = AESGCM(seal_key).encrypt(bytes(12), device_secret, aad)
    return {
        "ephemeral_public": ephemeral_public,
        "shared_secret": shared,
        "seal_key": seal_key,
        "sealed_device_secret": sealed,
    }


class Case:
    """One positive vector: inputs, derived values and the envelope."""

    def __init__(
        self,
        name: str,
        content: bytes,
        metadata: dict[str, Any],
        *,
        passphrase: str | None = None,
        chunk_size_log2: int = 16,
        argon2: dict[str, int] | None = None,
        device: RefDevice | None = None,
    ) -> None:
        assert metadata["size"] == len(content)
        self.name = name
        self.content = content
        self.metadata = metadata
        self.passphrase = passphrase
        self.chunk_size_log2 = chunk_size_log2
        self.argon2 = argon2 if passphrase is not None else None
        self.link_key = stream(f"{name}/link key", 32)
        self.salt = stream(f"{name}/salt", 32)
        self.argon2_salt = stream(f"{name}/argon2 salt", 16) if passphrase is not None else None
        self.random = self.salt + (self.argon2_salt or b"")
        self.header = ref_header(
            chunk_size_log2, self.salt, self.argon2, self.argon2_salt, device=device is not None
        )
        self.device = device
        self.device_secret = None
        if device is not None:
            self.ephemeral_private = stream(f"{name}/ephemeral private", 32)
            self.device_secret = stream(f"{name}/device secret", 32)
            self.random += self.ephemeral_private + self.device_secret
            self.seal_aad = self.header
            self.seal = ref_device_seal(
                device.x25519_public, self.ephemeral_private, self.device_secret, self.seal_aad
            )
            self.header += self.seal["ephemeral_public"] + self.seal["sealed_device_secret"]
        self.passphrase_key, self.key, self.nonce_prefix = ref_keys(
            self.link_key,
            self.salt,
            passphrase,
            self.argon2,
            self.argon2_salt,
            self.device_secret,
        )
        self.meta = ref_meta(metadata)
        self.plaintext = ref_plaintext(self.meta, content)
        self.chunks = ref_chunks(self.plaintext, chunk_size_log2)
        self.envelope = self.encrypt(self.chunks)

    def encrypt(self, chunks: list[bytes], flags: list[int] | None = None) -> bytes:
        return ref_encrypt(self.header, self.key, self.nonce_prefix, chunks, flags)

    def sealed_chunk(self, index: int) -> tuple[int, int]:
        """(start, end) of sealed chunk `index` inside the envelope."""
        step = 2**self.chunk_size_log2 + 16
        start = len(self.header) + index * step
        return start, min(start + step, len(self.envelope))

    def as_json(self) -> dict[str, Any]:
        vector = self._as_json()
        if self.device is not None:
            assert self.device_secret is not None
            vector["device"] = self.device.as_json()
            vector["ephemeral_private"] = self.ephemeral_private.hex()
            vector["device_secret"] = self.device_secret.hex()
            vector["seal_aad"] = self.seal_aad.hex()
            vector.update({name: value.hex() for name, value in self.seal.items()})
            vector["header"] = self.header.hex()
            # The envelope last, as in the other vectors.
            vector["envelope"] = vector.pop("envelope")
        return vector

    def _as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "link_key": self.link_key.hex(),
            "passphrase": self.passphrase,
            "random": self.random.hex(),
            "chunk_size_log2": self.chunk_size_log2,
            "argon2": self.argon2,
            "metadata": self.metadata,
            "content": self.content.hex(),
            # Intermediate values, to debug a second implementation step by step.
            "passphrase_key": None if self.passphrase_key is None else self.passphrase_key.hex(),
            "key": self.key.hex(),
            "nonce_prefix": self.nonce_prefix.hex(),
            "plaintext_size": len(self.plaintext),
            "chunk_count": len(self.chunks),
            "envelope": self.envelope.hex(),
        }


# -- the vectors ---------------------------------------------------------------------------


def positive_cases() -> list[Case]:
    cases = _positive_cases()
    unpadded = next(case for case in cases if case.name == "no-padding-full-last")
    assert len(unpadded.plaintext) == 4 + len(unpadded.meta) + len(unpadded.content) == 3072
    return cases


def _positive_cases() -> list[Case]:
    text = b"Hello from Atopos: the door code is 4711.\n"
    multi = stream("multi-chunk/content", 5000)
    full_last = stream("multi-chunk-full-last/content", 3000)
    unicode_file = "Grüße, ünïcödé ✓\n".encode()
    return [
        Case("text", text, {"kind": "text", "size": len(text)}),
        Case(
            "text-passphrase-argon2id",
            text,
            {"kind": "text", "size": len(text)},
            passphrase="correct horse battery staple",
            argon2=TEST_ARGON2,
        ),
        # NFD on input: the key must come from the NFC form "Café naïve".
        Case(
            "passphrase-nfc-normalised",
            b"nfc",
            {"kind": "text", "size": 3},
            passphrase=unicodedata.normalize("NFD", "Café naïve"),
            argon2=TEST_ARGON2,
        ),
        Case(
            "multi-chunk",
            multi,
            {"kind": "file", "name": "blob.bin", "size": len(multi)},
            chunk_size_log2=10,
        ),
        # 4 + 28 + 3000 pads to 3072 = 3 x 1024: the flagged last chunk is a full one.
        Case(
            "multi-chunk-full-last",
            full_last,
            {"kind": "file", "name": "b.bin", "size": len(full_last)},
            chunk_size_log2=10,
        ),
        # 4 + 27 + 3041 = 3072 exactly: no padding, and content fills the full last chunk.
        Case(
            "no-padding-full-last",
            stream("no-padding-full-last/content", 3041),
            {"kind": "file", "size": 3041},
            chunk_size_log2=10,
        ),
        Case("empty", b"", {"kind": "text", "size": 0}),
        Case(
            "file-unicode-name",
            unicode_file,
            {
                "kind": "file",
                "name": 'résumé 履歴書 "q" \\ 🔑.txt',
                "size": len(unicode_file),
                "type": "text/plain; charset=utf-8",
            },
        ),
        # A 1500-byte name: the metadata record spans two chunks.
        Case(
            "metadata-spans-chunks",
            b"x" * 10,
            {"kind": "file", "name": "n" * 1500, "size": 10, "type": "application/octet-stream"},
            chunk_size_log2=10,
        ),
    ]


def negative_cases(cases: dict[str, Case]) -> list[dict[str, Any]]:
    text = cases["text"]
    locked = cases["text-passphrase-argon2id"]
    multi = cases["multi-chunk"]
    full_last = cases["multi-chunk-full-last"]
    negatives: list[dict[str, Any]] = []
    size = len(text.content)

    def add(
        name: str,
        case: Case,
        envelope: bytes,
        reason: str,
        *,
        error: str = "DecryptionFailed",
        link_key: bytes | None = None,
        passphrase: str | None = None,
    ) -> None:
        negatives.append(
            {
                "name": name,
                "link_key": (link_key or case.link_key).hex(),
                "passphrase": passphrase if passphrase is not None else case.passphrase,
                "envelope": envelope.hex(),
                "reason": reason,
                "error": error,
            }
        )

    def flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
        return data[:index] + bytes([data[index] ^ mask]) + data[index + 1 :]

    def with_byte(data: bytes, index: int, value: int) -> bytes:
        return data[:index] + bytes([value]) + data[index + 1 :]

    def with_plaintext(case: Case, plaintext: bytes, flags: list[int] | None = None) -> bytes:
        return case.encrypt(ref_chunks(plaintext, case.chunk_size_log2), flags)

    def plaintext_for(meta: bytes, content: bytes, total: int | None = None) -> bytes:
        body = struct.pack(">I", len(meta)) + meta + content
        return body + bytes((total or ref_padme(max(len(body), 512))) - len(body))

    # Header: every byte is AAD, so any change breaks the first tag or is refused outright.
    add("tampered-header-salt", text, flip(text.envelope, 8), "a salt byte flipped")
    add("tampered-header-argon2-memory", locked, flip(locked.envelope, 43), "memory_kib changed")
    add("tampered-header-argon2-salt", locked, flip(locked.envelope, 60), "Argon2 salt changed")
    add(
        "tampered-header-chunk-size",
        multi,
        with_byte(multi.envelope, 6, 11),
        "chunk_size_log2 10 -> 11",
    )
    add("bad-magic", text, with_byte(text.envelope, 0, ord("B")), "magic is not ATPS")
    add(
        "unsupported-version",
        text,
        with_byte(text.envelope, 4, 2),
        "version 2",
        error="UnsupportedEnvelope",
    )
    add(
        "unsupported-suite",
        text,
        with_byte(text.envelope, 5, 2),
        "suite 2",
        error="UnsupportedEnvelope",
    )
    add(
        "unsupported-kdf",
        text,
        with_byte(text.envelope, 7, 4),
        "kdf flag 4 (unknown; 1 and 2 are passphrase and device)",
        error="UnsupportedEnvelope",
    )
    add(
        "chunk-size-too-small",
        multi,
        with_byte(multi.envelope, 6, 9),
        "chunk_size_log2 9 is out of range",
    )
    add(
        "chunk-size-too-large",
        text,
        with_byte(text.envelope, 6, 25),
        "chunk_size_log2 25 is out of range",
    )
    add(
        "argon2-iterations-zero",
        locked,
        locked.envelope[:44] + struct.pack(">I", 0) + locked.envelope[48:],
        "Argon2 iterations 0 is out of range",
    )
    add(
        "argon2-memory-too-large",
        locked,
        locked.envelope[:40] + struct.pack(">I", 2**20 + 1) + locked.envelope[44:],
        "Argon2 memory above 1 GiB is refused before any work",
    )
    add("empty-input", text, b"", "no bytes at all")
    add("header-only", text, text.envelope[:40], "header without any chunk")
    add("header-truncated", locked, locked.envelope[:50], "kdf 1 header cut short")

    # Chunks.
    add("tampered-chunk", text, flip(text.envelope, 60), "a ciphertext byte flipped")
    add("tampered-tag", text, flip(text.envelope, len(text.envelope) - 1), "a tag byte flipped")
    start = multi.sealed_chunk(len(multi.chunks) - 1)[0]
    add("truncated-last-chunk-dropped", multi, multi.envelope[:start], "ends at a chunk boundary")
    start = full_last.sealed_chunk(len(full_last.chunks) - 1)[0]
    add(
        "truncated-full-last-chunk-dropped",
        full_last,
        full_last.envelope[:start],
        "ends after a full, unflagged chunk",
    )
    add(
        "truncated-mid-chunk",
        multi,
        multi.envelope[: multi.sealed_chunk(1)[0] + 500],
        "ends inside chunk 1",
    )
    add(
        "truncated-one-byte",
        text,
        text.envelope[:-1],
        "last byte missing",
    )
    first, second = multi.sealed_chunk(0), multi.sealed_chunk(1)
    swapped = (
        multi.envelope[: first[0]]
        + multi.envelope[second[0] : second[1]]
        + multi.envelope[first[0] : first[1]]
        + multi.envelope[second[1] :]
    )
    add("chunks-swapped", multi, swapped, "chunks 0 and 1 exchanged")
    add(
        "chunk-dropped",
        multi,
        multi.envelope[: second[0]] + multi.envelope[second[1] :],
        "chunk 1 removed",
    )
    add(
        "chunk-duplicated",
        multi,
        multi.envelope[: second[1]] + multi.envelope[second[0] :],
        "chunk 1 repeated",
    )
    add("bytes-appended", text, text.envelope + b"\x00", "one byte after the last chunk")
    add(
        "chunk-appended",
        multi,
        multi.envelope + multi.envelope[first[0] : first[1]],
        "a copy of chunk 0 after the last chunk",
    )
    add(
        "envelope-concatenated",
        text,
        text.envelope + text.envelope,
        "two envelopes back to back",
    )

    # Keys.
    add("wrong-link-key", text, text.envelope, "another link key", link_key=bytes(32))
    add("wrong-passphrase", locked, locked.envelope, "another passphrase", passphrase="Tr0ub4dor&3")
    add(
        "passphrase-not-nfc-equivalent",
        locked,
        locked.envelope,
        "trailing space is a different passphrase",
        passphrase="correct horse battery staple ",
    )
    add(
        "wrong-link-key-right-passphrase",
        locked,
        locked.envelope,
        "locked envelope, right passphrase, wrong link key",
        link_key=text.link_key,
    )

    # Well-authenticated but malformed: only the key holder could make these.
    add(
        "nonzero-padding",
        text,
        with_plaintext(text, text.plaintext[:-1] + b"\x01"),
        "last padding byte is 1",
    )
    add(
        "padding-too-long",
        text,
        with_plaintext(text, text.plaintext + bytes(32)),
        "32 more zero bytes than Padmé gives",
    )
    add(
        "padding-too-short",
        text,
        with_plaintext(text, text.plaintext[:-1]),
        "one zero byte less than Padmé gives",
    )
    # (A size one *larger* would be a valid envelope whose content ends in a zero byte.)
    add(
        "size-smaller-than-content",
        text,
        with_plaintext(
            text,
            plaintext_for(ref_meta({"kind": "text", "size": size - 1}), text.content),
        ),
        "metadata size one less: the last content byte lands in the padding",
    )
    add(
        "size-beyond-stream",
        text,
        with_plaintext(
            text,
            plaintext_for(ref_meta({"kind": "text", "size": 10_000}), text.content, 512),
        ),
        "metadata size larger than the whole stream",
    )
    for label, record in [
        (label, record.replace(b"42", str(size).encode()))
        for label, record in [
            ("meta-not-json", b"{kind:text}"),
            ("meta-not-object", b'["text",1]'),
            ("meta-unknown-key", b'{"kind":"text","size":42,"extra":1}'),
            ("meta-missing-size", b'{"kind":"text"}'),
            ("meta-missing-kind", b'{"size":42}'),
            ("meta-bad-kind", b'{"kind":"image","size":42}'),
            ("meta-size-string", b'{"kind":"text","size":"42"}'),
            ("meta-size-negative", b'{"kind":"text","size":-1}'),
            ("meta-size-fraction", b'{"kind":"text","size":42.5}'),
            ("meta-name-null", b'{"kind":"file","name":null,"size":42}'),
            ("meta-type-number", b'{"kind":"file","size":42,"type":7}'),
            ("meta-invalid-utf8", b'{"kind":"file","name":"\xff","size":42}'),
            ("meta-utf8-bom", b'\xef\xbb\xbf{"kind":"text","size":42}'),
            ("meta-empty", b""),
            ("meta-lone-surrogate", b'{"kind":"file","name":"\\ud800","size":42}'),
        ]
    ]:
        add(label, text, with_plaintext(text, plaintext_for(record, text.content)), label[5:])
    short_record = ref_meta({"kind": "file", "name": "", "size": size})
    add(
        "meta-length-over-4096",
        text,
        with_plaintext(
            text,
            plaintext_for(
                ref_meta({"kind": "file", "name": "n" * (4097 - len(short_record)), "size": size}),
                text.content,
            ),
        ),
        "a well-formed metadata record of 4097 bytes",
    )
    add(
        "meta-length-beyond-stream",
        text,
        with_plaintext(text, struct.pack(">I", 600) + text.plaintext[4:]),
        "metadata length prefix points past the end",
    )

    # Flags.
    add(
        "last-chunk-unflagged",
        multi,
        multi.encrypt(multi.chunks, [0] * len(multi.chunks)),
        "no chunk carries the last flag",
    )
    add(
        "first-chunk-flagged",
        multi,
        multi.encrypt(multi.chunks, [1] + [0] * (len(multi.chunks) - 2) + [1]),
        "chunk 0 flagged last although more follow",
    )
    add(
        "flagged-chunk-early-end",
        multi,
        multi.encrypt(multi.chunks[:2], [0, 1]),
        "a correctly flagged, but premature, end",
    )
    add(
        "empty-flagged-chunk-after-full",
        full_last,
        full_last.encrypt([*full_last.chunks, b""], [0] * len(full_last.chunks) + [1]),
        "the last flag on an extra empty chunk",
    )
    return negatives


DEVICE_A = RefDevice("device-a")
DEVICE_B = RefDevice("device-b")


def device_cases() -> list[Case]:
    text = b"Only device A may read this: the vault code is 0451.\n"
    multi = stream("device-multi-chunk/content", 2500)
    return [
        Case("device-text", text, {"kind": "text", "size": len(text)}, device=DEVICE_A),
        Case(
            "device-passphrase",
            text,
            {"kind": "text", "size": len(text)},
            passphrase="correct horse battery staple",
            argon2=TEST_ARGON2,
            device=DEVICE_A,
        ),
        Case(
            "device-multi-chunk",
            multi,
            {"kind": "file", "name": "report.pdf", "size": len(multi), "type": "application/pdf"},
            chunk_size_log2=10,
            device=DEVICE_A,
        ),
    ]


def device_negative_cases(cases: dict[str, Case]) -> list[dict[str, Any]]:
    bound = cases["device-text"]
    locked = cases["device-passphrase"]
    negatives: list[dict[str, Any]] = []
    prefix = len(bound.seal_aad)  # 40: where the device fields start

    def add(
        name: str,
        case: Case,
        envelope: bytes,
        reason: str,
        *,
        error: str = "DecryptionFailed",
        device: RefDevice | None = DEVICE_A,
        link_key: bytes | None = None,
        passphrase: str | None = None,
    ) -> None:
        negatives.append(
            {
                "name": name,
                "link_key": (link_key or case.link_key).hex(),
                "passphrase": passphrase if passphrase is not None else case.passphrase,
                "device": None if device is None else device.as_json(),
                "envelope": envelope.hex(),
                "reason": reason,
                "error": error,
            }
        )

    def flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
        return data[:index] + bytes([data[index] ^ mask]) + data[index + 1 :]

    def with_byte(data: bytes, index: int, value: int) -> bytes:
        return data[:index] + bytes([value]) + data[index + 1 :]

    def rebuilt(case: Case, header: bytes, key: bytes, nonce_prefix: bytes) -> bytes:
        return ref_encrypt(header, key, nonce_prefix, case.chunks)

    add(
        "no-device",
        bound,
        bound.envelope,
        "opened without a device",
        error="DeviceRequired",
        device=None,
    )
    add(
        "no-device-right-passphrase",
        locked,
        locked.envelope,
        "device and passphrase needed; the passphrase given, no device",
        error="DeviceRequired",
        device=None,
    )
    add(
        "no-device-no-passphrase",
        locked,
        locked.envelope,
        "device and passphrase needed, neither given: the device is asked for first",
        error="DeviceRequired",
        device=None,
    )
    negatives[-1]["passphrase"] = None
    add(
        "other-device",
        bound,
        bound.envelope,
        "sealed to device A, opened with device B",
        device=DEVICE_B,
    )
    add(
        "other-device-with-passphrase",
        locked,
        locked.envelope,
        "right passphrase, device B",
        device=DEVICE_B,
    )
    add(
        "tampered-ephemeral-public",
        bound,
        flip(bound.envelope, prefix + 5),
        "ephemeral key changed",
    )
    add(
        "small-order-ephemeral-public",
        bound,
        bound.envelope[:prefix] + bytes(32) + bound.envelope[prefix + 32 :],
        "ephemeral key replaced by u = 0 (the exchange gives all zeros)",
    )
    add(
        "tampered-sealed-device-secret",
        bound,
        flip(bound.envelope, prefix + 32 + 3),
        "a byte of the sealed device secret changed",
    )
    add(
        "tampered-seal-tag",
        bound,
        flip(bound.envelope, prefix + 32 + 47),
        "a byte of the seal's tag changed",
    )
    add(
        "tampered-salt",
        bound,
        flip(bound.envelope, 8),
        "salt changed (AAD of the seal and the chunks)",
    )
    add("tampered-chunk-size", bound, with_byte(bound.envelope, 6, 17), "chunk_size_log2 16 -> 17")
    add(
        "tampered-argon2-cost",
        locked,
        flip(locked.envelope, 47),
        "Argon2 iterations changed (part of the seal's AAD)",
    )
    add("device-flag-cleared", bound, with_byte(bound.envelope, 7, 0), "flags 2 -> 0")
    memory_kib = struct.unpack(">I", bound.envelope[prefix : prefix + 4])[0]
    assert memory_kib > 2**20  # so every reader refuses the header before any Argon2 work
    add(
        "passphrase-flag-set",
        bound,
        with_byte(bound.envelope, 7, 3),
        "flags 2 -> 3: the ephemeral key is read as Argon2 fields (memory out of range)",
        passphrase="correct horse battery staple",
    )
    add("passphrase-flag-cleared", locked, with_byte(locked.envelope, 7, 2), "flags 3 -> 2")
    add(
        "unknown-flag-4",
        bound,
        with_byte(bound.envelope, 7, 6),
        "flags 2 | 4: an unknown flag",
        error="UnsupportedEnvelope",
    )
    add(
        "unknown-flag-128",
        bound,
        with_byte(bound.envelope, 7, 0x82),
        "flags 2 | 128: an unknown flag",
        error="UnsupportedEnvelope",
    )
    add(
        "header-truncated-in-device-fields",
        bound,
        bound.envelope[: prefix + 50],
        "ends inside the sealed device secret",
    )
    add(
        "wrong-link-key-right-device",
        bound,
        bound.envelope,
        "device A, another link key",
        link_key=bytes(32),
    )
    add(
        "wrong-passphrase-right-device",
        locked,
        locked.envelope,
        "device A, another passphrase",
        passphrase="Tr0ub4dor&3",
    )
    # Sealed by a writer that got the protocol wrong, so only the reader's checks catch it.
    unflagged_aad = ref_header(bound.chunk_size_log2, bound.salt, None, None)
    wrong_seal = ref_device_seal(
        DEVICE_A.x25519_public, bound.ephemeral_private, bound.device_secret or b"", unflagged_aad
    )
    header = unflagged_aad[:7] + bytes([2]) + unflagged_aad[8:]
    header += wrong_seal["ephemeral_public"] + wrong_seal["sealed_device_secret"]
    add(
        "seal-aad-without-flags",
        bound,
        rebuilt(
            bound,
            header,
            *ref_keys(bound.link_key, bound.salt, None, None, None, bound.device_secret)[1:],
        ),
        "the device secret sealed with AAD whose flags byte is 0",
    )
    _, key, nonce_prefix = ref_keys(bound.link_key, bound.salt, None, None, None, None)
    add(
        "device-secret-not-in-key",
        bound,
        rebuilt(bound, bound.header, key, nonce_prefix),
        "chunks sealed under HKDF(link key) alone although the header is device-bound",
    )
    return negatives


def build_device() -> tuple[str, str]:
    """envelope_device.json and envelope_device_invalid.json, exact text."""
    cases = device_cases()
    negative = device_negative_cases({case.name: case for case in cases})
    names = [vector["name"] for vector in negative]
    assert len(set(names)) == len(names)
    return _dump([case.as_json() for case in cases]), _dump(negative)


def _dump(data: object) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def build() -> tuple[str, str]:
    """The two files' exact text."""
    cases = positive_cases()
    positive = [case.as_json() for case in cases]
    negative = negative_cases({case.name: case for case in cases})
    names = [vector["name"] for vector in negative]
    assert len(set(names)) == len(names)

    def dump(data: object) -> str:
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

    return dump(positive), dump(negative)


def main(argv: list[str]) -> int:
    positive, negative = build()
    device_positive, device_negative = build_device()
    files = (
        (POSITIVE_PATH, positive),
        (NEGATIVE_PATH, negative),
        (DEVICE_POSITIVE_PATH, device_positive),
        (DEVICE_NEGATIVE_PATH, device_negative),
    )
    if "--check" in argv:
        stale = [
            path.name
            for path, text in files
            if not path.exists() or path.read_text(encoding="utf-8") != text
        ]
        if stale:
            print("stale:", ", ".join(stale), file=sys.stderr)
            return 1
        return 0
    for path, text in files:
        path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
