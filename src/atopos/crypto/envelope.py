"""The secret envelope, format version 1 (specified in docs/protocol/envelope.md).

A header of 40 to 148 bytes, authenticated as AAD of every chunk, then the padded plaintext
stream `u32(len(meta)) || meta || content || zeros` cut into fixed-size chunks, each sealed
with AES-256-GCM under a nonce that carries the chunk counter and a last-chunk flag (the
STREAM construction of Hoang, Reyhanitabar, Rogaway and Vizár, CRYPTO 2015). Reordering,
dropping, truncating or extending the stream breaks a tag.

The header's flags byte says what besides the link key the content key needs: a
passphrase (Argon2id) and/or a device (a 32-byte device secret sealed to the device's X25519
key inside the header, docs/protocol/device.md).

`Sealer` and `Opener` stream in memory bounded by about two chunks; `seal` and
`open_envelope` are the one-shot forms. Nothing here draws randomness on its own.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from atopos.crypto.access_proof import AccessSigner
from atopos.crypto.device import (
    EPHEMERAL_PRIVATE_BYTES,
    PUBLIC_KEY_BYTES,
    SEALED_DEVICE_SECRET_BYTES,
    DevicePublic,
    DeviceUnsealer,
    open_device_secret,
    seal_device_secret,
)
from atopos.crypto.errors import (
    DecryptionFailed,
    DeviceRequired,
    PassphraseRequired,
    UnsupportedEnvelope,
)
from atopos.crypto.kdf import (
    ARGON2_FIELDS,
    ARGON2_SALT_BYTES,
    ENVELOPE_SALT_BYTES,
    Argon2Params,
    derive_envelope_keys,
    derive_passphrase_key,
    pack_argon2_fields,
    unpack_argon2_fields,
)
from atopos.crypto.padding import padded_size
from atopos.crypto.randomness import RandomBytes, draw
from atopos.crypto.sizes import AES_GCM_TAG_BYTES, DEVICE_SECRET_BYTES, LINK_KEY_BYTES

__all__ = [
    "DEFAULT_ARGON2",
    "DEFAULT_CHUNK_SIZE_LOG2",
    "DEVICE_FIELDS_BYTES",
    "FLAG_DEVICE",
    "FLAG_PASSPHRASE",
    "HEADER_BYTES_MAX",
    "HEADER_BYTES_WITHOUT_PASSPHRASE",
    "HEADER_BYTES_WITH_PASSPHRASE",
    "LINK_KEY_BYTES",
    "MAGIC",
    "MAX_CHUNKS",
    "MAX_CHUNK_SIZE_LOG2",
    "MAX_METADATA_BYTES",
    "MIN_CHUNK_SIZE_LOG2",
    "SUITE_AES256GCM_HKDFSHA256_STREAM",
    "TAG_BYTES",
    "VERSION",
    "Argon2Params",
    "DevicePublic",
    "DeviceUnsealer",
    "Header",
    "Metadata",
    "Opener",
    "Sealer",
    "is_envelope_size",
    "open_envelope",
    "parse_header",
    "seal",
    "sealed_size",
]

MAGIC = b"ATPS"
VERSION = 1
SUITE_AES256GCM_HKDFSHA256_STREAM = 1
# The header's "kdf" byte is a set of flags: what the content key needs besides the link key.
FLAG_PASSPHRASE = 1
FLAG_DEVICE = 2
_KNOWN_FLAGS = FLAG_PASSPHRASE | FLAG_DEVICE

DEFAULT_CHUNK_SIZE_LOG2 = 16
MIN_CHUNK_SIZE_LOG2 = 10
MAX_CHUNK_SIZE_LOG2 = 24
MAX_METADATA_BYTES = 4096
TAG_BYTES = AES_GCM_TAG_BYTES
# The chunk counter is a u32 in the nonce; one more chunk would reuse a nonce.
MAX_CHUNKS = 1 << 32

DEFAULT_ARGON2 = Argon2Params()

_BASE_HEADER = struct.Struct(">4sBBBB32s")
# ephemeral X25519 public key, the device secret sealed to the device
_DEVICE_FIELDS = struct.Struct(f">{PUBLIC_KEY_BYTES}s{SEALED_DEVICE_SECRET_BYTES}s")
HEADER_BYTES_WITHOUT_PASSPHRASE = _BASE_HEADER.size
HEADER_BYTES_WITH_PASSPHRASE = _BASE_HEADER.size + ARGON2_FIELDS.size
DEVICE_FIELDS_BYTES = _DEVICE_FIELDS.size
HEADER_BYTES_MAX = HEADER_BYTES_WITH_PASSPHRASE + DEVICE_FIELDS_BYTES
_META_LENGTH = struct.Struct(">I")
_NONCE_SUFFIX = struct.Struct(">IB")
_METADATA_KEYS = frozenset({"kind", "name", "size", "type"})


# -- metadata ------------------------------------------------------------------------------


def _is_utf8_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Metadata:
    """What the envelope says about its content. It travels inside the ciphertext."""

    kind: Literal["text", "file"]
    size: int
    name: str | None = None
    media_type: str | None = None  # the JSON key is "type"

    def __post_init__(self) -> None:
        if self.kind not in ("text", "file"):
            raise ValueError("kind must be 'text' or 'file'")
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 0:
            raise ValueError("size must be a non-negative int")
        for value in (self.name, self.media_type):
            # Lone surrogates have no UTF-8 form; refusing them keeps the JSON identical to
            # what a browser's JSON.stringify + TextEncoder would write.
            if value is not None and not (isinstance(value, str) and _is_utf8_encodable(value)):
                raise ValueError("name and media_type must be valid Unicode strings")


def _encode_metadata(metadata: Metadata) -> bytes:
    record: dict[str, str | int] = {"kind": metadata.kind}
    if metadata.name is not None:
        record["name"] = metadata.name
    record["size"] = metadata.size
    if metadata.media_type is not None:
        record["type"] = metadata.media_type
    # Compact, raw non-ASCII, keys in this order: byte-identical to JSON.stringify.
    encoded = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(encoded) > MAX_METADATA_BYTES:
        raise ValueError(f"the metadata record is longer than {MAX_METADATA_BYTES} bytes")
    return encoded


def _decode_metadata(raw: bytes) -> Metadata:
    try:
        # Decode first: json.loads(bytes) would also guess UTF-16 and UTF-32. Duplicate keys
        # are left to json's rule (the last wins), which is also JSON.parse's.
        record = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        raise DecryptionFailed from None
    if not isinstance(record, dict) or not _METADATA_KEYS.issuperset(record):
        raise DecryptionFailed
    if "kind" not in record or "size" not in record:
        raise DecryptionFailed
    # Optional keys are absent or strings: an explicit null is not the same as absent.
    if any(key in record and not isinstance(record[key], str) for key in ("name", "type")):
        raise DecryptionFailed
    try:
        # Metadata checks the rest: kind, and size an int (not a float, not a bool) >= 0.
        return Metadata(
            kind=record["kind"],
            size=record["size"],
            name=record.get("name"),
            media_type=record.get("type"),
        )
    except ValueError:
        raise DecryptionFailed from None


# -- header --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Header:
    """The parsed envelope header; `raw` is the exact bytes, used as AAD of every chunk."""

    chunk_size_log2: int
    salt: bytes
    argon2: Argon2Params | None
    argon2_salt: bytes | None
    raw: bytes
    ephemeral_public: bytes | None = None
    sealed_device_secret: bytes | None = None

    @property
    def has_passphrase(self) -> bool:
        return self.argon2 is not None

    @property
    def is_device_bound(self) -> bool:
        return self.ephemeral_public is not None

    @property
    def device_seal_aad(self) -> bytes:
        """The header bytes before the device fields: the AAD of the sealed device secret."""
        return self.raw[: len(self.raw) - DEVICE_FIELDS_BYTES] if self.is_device_bound else b""

    @property
    def chunk_size(self) -> int:
        return 1 << self.chunk_size_log2


def _encode_header(
    chunk_size_log2: int,
    salt: bytes,
    argon2: Argon2Params | None,
    argon2_salt: bytes | None,
    *,
    is_device_bound: bool = False,
) -> bytes:
    """The header up to, not including, the device fields (the sealer appends those)."""
    flags = (FLAG_PASSPHRASE if argon2 is not None else 0) | (FLAG_DEVICE if is_device_bound else 0)
    raw = _BASE_HEADER.pack(
        MAGIC, VERSION, SUITE_AES256GCM_HKDFSHA256_STREAM, chunk_size_log2, flags, salt
    )
    if argon2 is not None:
        assert argon2_salt is not None
        raw += pack_argon2_fields(argon2, argon2_salt)
    return raw


def parse_header(data: bytes) -> Header | None:
    """Parse the header at the start of `data` (bytes after it are ignored).

    Returns None while `data` is too short to decide. Fails as early as the bytes allow:
    UnsupportedEnvelope for an unknown version, suite or kdf flag; DecryptionFailed for
    anything else malformed (not an envelope, chunk size or Argon2 cost out of range).
    """
    seen = len(data)
    if data[: min(seen, len(MAGIC))] != MAGIC[: min(seen, len(MAGIC))]:
        raise DecryptionFailed
    if seen > 4 and data[4] != VERSION:
        raise UnsupportedEnvelope
    if seen > 5 and data[5] != SUITE_AES256GCM_HKDFSHA256_STREAM:
        raise UnsupportedEnvelope
    if seen > 6 and not MIN_CHUNK_SIZE_LOG2 <= data[6] <= MAX_CHUNK_SIZE_LOG2:
        raise DecryptionFailed
    if seen > 7 and data[7] & ~_KNOWN_FLAGS:
        # A new flag would come with a new reader, like a new suite: tell the user to upgrade.
        raise UnsupportedEnvelope
    if seen < HEADER_BYTES_WITHOUT_PASSPHRASE:
        return None
    _, _, _, chunk_size_log2, flags, salt = _BASE_HEADER.unpack_from(data)
    size = HEADER_BYTES_WITHOUT_PASSPHRASE
    argon2 = argon2_salt = None
    if flags & FLAG_PASSPHRASE:
        if seen < size + ARGON2_FIELDS.size:
            return None
        try:
            argon2, argon2_salt = unpack_argon2_fields(data, size)
        except ValueError:
            raise DecryptionFailed from None
        size += ARGON2_FIELDS.size
    ephemeral_public = sealed_device_secret = None
    if flags & FLAG_DEVICE:
        if seen < size + _DEVICE_FIELDS.size:
            return None
        ephemeral_public, sealed_device_secret = _DEVICE_FIELDS.unpack_from(data, size)
        size += _DEVICE_FIELDS.size
    return Header(
        chunk_size_log2,
        salt,
        argon2,
        argon2_salt,
        bytes(data[:size]),
        ephemeral_public,
        sealed_device_secret,
    )


# -- sizes ---------------------------------------------------------------------------------


def _check_chunk_size_log2(chunk_size_log2: int) -> None:
    if not (
        isinstance(chunk_size_log2, int)
        and MIN_CHUNK_SIZE_LOG2 <= chunk_size_log2 <= MAX_CHUNK_SIZE_LOG2
    ):
        raise ValueError(
            f"chunk_size_log2 must be between {MIN_CHUNK_SIZE_LOG2} and {MAX_CHUNK_SIZE_LOG2}"
        )


def _chunk_count(plaintext_size: int, chunk_size_log2: int) -> int:
    count = (plaintext_size + (1 << chunk_size_log2) - 1) >> chunk_size_log2
    if count > MAX_CHUNKS:
        raise ValueError("the content is too large for this chunk size")
    return count


def _plaintext_size(metadata_length: int, content_size: int) -> int:
    return padded_size(_META_LENGTH.size + metadata_length + content_size)


def _layout(
    metadata_length: int,
    content_size: int,
    chunk_size_log2: int,
    *,
    has_passphrase: bool,
    is_device_bound: bool,
) -> tuple[int, int, int]:
    """The padded plaintext size, the chunk count and the envelope size, in that order.

    The caller has checked `chunk_size_log2`; ValueError beyond 2**32 chunks.
    """
    plaintext_size = _plaintext_size(metadata_length, content_size)
    chunk_count = _chunk_count(plaintext_size, chunk_size_log2)
    header_size = (
        HEADER_BYTES_WITH_PASSPHRASE if has_passphrase else HEADER_BYTES_WITHOUT_PASSPHRASE
    ) + (DEVICE_FIELDS_BYTES if is_device_bound else 0)
    return plaintext_size, chunk_count, header_size + plaintext_size + chunk_count * TAG_BYTES


def sealed_size(
    metadata: Metadata,
    *,
    has_passphrase: bool = False,
    chunk_size_log2: int = DEFAULT_CHUNK_SIZE_LOG2,
    is_device_bound: bool = False,
) -> int:
    """The exact byte length of the envelope `seal` makes for this metadata.

    ValueError when no envelope can be made (metadata record over 4096 bytes, chunk size out
    of range, more than 2**32 chunks).
    """
    _check_chunk_size_log2(chunk_size_log2)
    _, _, size = _layout(
        len(_encode_metadata(metadata)),
        metadata.size,
        chunk_size_log2,
        has_passphrase=has_passphrase,
        is_device_bound=is_device_bound,
    )
    return size


def is_envelope_size(header: Header, total: int) -> bool:
    """Whether an envelope with this header can be exactly `total` bytes long: its
    plaintext is padded to a Padmé size and sealed in chunks of 16-byte-tagged records, so
    most lengths are impossible (a cheap check on an upload, before any key is known)."""
    body = total - len(header.raw)
    record = header.chunk_size + TAG_BYTES
    estimate = -(-body // record)
    for chunk_count in (estimate - 1, estimate, estimate + 1):
        plaintext_size = body - chunk_count * TAG_BYTES
        if (
            chunk_count >= 1
            and plaintext_size > 0
            and padded_size(plaintext_size) == plaintext_size
            and _chunk_count(plaintext_size, header.chunk_size_log2) == chunk_count
        ):
            return True
    return False


# -- sealing -------------------------------------------------------------------------------


def _check_link_key(link_key: bytes) -> None:
    if len(link_key) != LINK_KEY_BYTES:
        raise ValueError(f"the link key must be {LINK_KEY_BYTES} bytes")


def _nonce(prefix: bytes, index: int, is_last: bool) -> bytes:
    return prefix + _NONCE_SUFFIX.pack(index, 1 if is_last else 0)


class Sealer:
    """Encrypt one envelope incrementally: `update()` with content, then `finalize()`.

    The content's size is fixed up front by `metadata.size`, so the total envelope size
    (`size`) is known before the first byte and the last chunk needs no look-ahead.
    """

    __slots__ = (
        "_aead",
        "_chunk_count",
        "_chunk_index",
        "_chunk_size",
        "_content_left",
        "_header",
        "_is_finalized",
        "_nonce_prefix",
        "_pending",
        "_plaintext_size",
        "_unsent_header",
        "access_key",
        "size",
    )

    size: int
    # The public access key to upload with the envelope (crypto/access_proof.py).
    access_key: bytes

    def __init__(
        self,
        link_key: bytes,
        metadata: Metadata,
        *,
        random_bytes: RandomBytes,
        passphrase: str | None = None,
        argon2: Argon2Params = DEFAULT_ARGON2,
        chunk_size_log2: int = DEFAULT_CHUNK_SIZE_LOG2,
        device: DevicePublic | None = None,
    ) -> None:
        _check_link_key(link_key)
        _check_chunk_size_log2(chunk_size_log2)
        if passphrase is not None and not passphrase:
            # An empty passphrase is almost surely a mistake (an empty file, a stray Enter),
            # and would give a false sense of a second factor.
            raise ValueError("the passphrase must not be empty")
        encoded_metadata = _encode_metadata(metadata)
        self._plaintext_size, self._chunk_count, self.size = _layout(
            len(encoded_metadata),
            metadata.size,
            chunk_size_log2,
            has_passphrase=passphrase is not None,
            is_device_bound=device is not None,
        )
        self._chunk_size = 1 << chunk_size_log2

        # Order of draws is part of the test vectors: salt, the Argon2 salt, the ephemeral
        # X25519 private key, the device secret.
        salt = draw(random_bytes, ENVELOPE_SALT_BYTES)
        argon2_salt = None
        if passphrase is not None:
            argon2_salt = draw(random_bytes, ARGON2_SALT_BYTES)
        self._header = _encode_header(
            chunk_size_log2,
            salt,
            argon2 if passphrase is not None else None,
            argon2_salt,
            is_device_bound=device is not None,
        )
        device_secret = None
        if device is not None:
            ephemeral_private = draw(random_bytes, EPHEMERAL_PRIVATE_BYTES)
            device_secret = draw(random_bytes, DEVICE_SECRET_BYTES)
            # The seal's AAD is the header so far: flags, salts and costs are bound to it.
            ephemeral_public, sealed = seal_device_secret(
                device.sealing_key, device_secret, ephemeral_private, self._header
            )
            self._header += _DEVICE_FIELDS.pack(ephemeral_public, sealed)
        passphrase_key = None
        if passphrase is not None:
            assert argon2_salt is not None
            passphrase_key = derive_passphrase_key(passphrase, argon2_salt, argon2)
        keys = derive_envelope_keys(bytes(link_key), salt, passphrase_key, device_secret)
        self.access_key = AccessSigner(bytes(link_key), passphrase_key).public_key
        self._aead: AESGCM | None = AESGCM(keys.key)
        self._nonce_prefix = keys.nonce_prefix

        self._unsent_header = True
        self._pending = bytearray(_META_LENGTH.pack(len(encoded_metadata)) + encoded_metadata)
        self._content_left = metadata.size
        self._chunk_index = 0
        self._is_finalized = False

    def _take_header(self) -> bytes:
        if self._unsent_header:
            self._unsent_header = False
            return self._header
        return b""

    def _seal_chunk(self, plaintext: bytes | bytearray | memoryview, is_last: bool) -> bytes:
        assert self._aead is not None
        nonce = _nonce(self._nonce_prefix, self._chunk_index, is_last)
        self._chunk_index += 1
        return self._aead.encrypt(nonce, plaintext, self._header)

    def update(self, content: bytes) -> bytes:
        """Add content; return the ciphertext ready so far (the first output starts with
        the header). ValueError if the content would exceed `metadata.size`."""
        if self._is_finalized:
            raise ValueError("the envelope is already finalized")
        if len(content) > self._content_left:
            raise ValueError("more content than metadata.size")
        self._content_left -= len(content)
        self._pending += content
        output = bytearray(self._take_header())
        last_index = self._chunk_count - 1
        offset = 0
        # The last chunk is left for finalize(): it is the one sealed with the flag.
        with memoryview(self._pending) as pending:
            while len(pending) - offset >= self._chunk_size and self._chunk_index < last_index:
                output += self._seal_chunk(pending[offset : offset + self._chunk_size], False)
                offset += self._chunk_size
        del self._pending[:offset]
        return bytes(output)

    def finalize_iter(self) -> Iterator[bytes]:
        """Like `finalize`, but yield the rest chunk by chunk, so that the padding of a
        large file (up to about 6% of it) never sits in memory at once."""
        if self._is_finalized:
            raise ValueError("the envelope is already finalized")
        if self._content_left:
            raise ValueError("less content than metadata.size")
        self._is_finalized = True
        return self._remaining_chunks()

    def _remaining_chunks(self) -> Iterator[bytes]:
        header = self._take_header()
        pending = self._pending
        last_index = self._chunk_count - 1
        while self._chunk_index < last_index:
            pending += bytes(self._chunk_size - len(pending))
            yield header + self._seal_chunk(pending, False)
            header = b""
            pending.clear()
        last_size = self._plaintext_size - last_index * self._chunk_size
        pending += bytes(last_size - len(pending))
        yield header + self._seal_chunk(pending, True)
        pending.clear()
        self._aead = None  # the key is of no further use; let it go now

    def finalize(self) -> bytes:
        """Seal the padding and the last chunk; ValueError unless exactly
        `metadata.size` bytes of content were fed."""
        return b"".join(self.finalize_iter())


def seal(
    content: bytes,
    metadata: Metadata,
    link_key: bytes,
    *,
    random_bytes: RandomBytes,
    passphrase: str | None = None,
    argon2: Argon2Params = DEFAULT_ARGON2,
    chunk_size_log2: int = DEFAULT_CHUNK_SIZE_LOG2,
    device: DevicePublic | None = None,
) -> bytes:
    """Encrypt `content` (whose length must equal `metadata.size`) into one envelope,
    sealed to `device` as well when one is given."""
    sealer = Sealer(
        link_key,
        metadata,
        random_bytes=random_bytes,
        passphrase=passphrase,
        argon2=argon2,
        chunk_size_log2=chunk_size_log2,
        device=device,
    )
    return sealer.update(content) + sealer.finalize()


# -- opening -------------------------------------------------------------------------------


class Opener:
    """Decrypt one envelope fed in arbitrary slices.

    `feed()` returns content (metadata and padding stripped) only from chunks whose tag
    verified, but the envelope as a whole is proven only when `finish()` returns: until then
    the output may be a truncated prefix, so write it somewhere provisional. Any failure is
    final: the opener then refuses every call with DecryptionFailed.

    `device` is consulted only when the header says the envelope is bound to a device; it
    needs nothing but an X25519 exchange with the device's key (`DeviceUnsealer`).
    PassphraseRequired and DeviceRequired are not failures: start again with what is missing.
    """

    __slots__ = (
        "_aead",
        "_buffer",
        "_chunk_index",
        "_content_left",
        "_device",
        "_has_failed",
        "_header",
        "_is_finished",
        "_link_key",
        "_metadata",
        "_metadata_buffer",
        "_metadata_length",
        "_nonce_prefix",
        "_passphrase",
        "_plaintext_seen",
        "_plaintext_size",
    )

    def __init__(
        self,
        link_key: bytes,
        passphrase: str | None = None,
        *,
        device: DeviceUnsealer | None = None,
    ) -> None:
        _check_link_key(link_key)
        self._link_key: bytes | None = bytes(link_key)
        self._passphrase = passphrase
        self._device = device
        self._header: Header | None = None
        self._metadata: Metadata | None = None
        self._aead: AESGCM | None = None
        self._nonce_prefix = b""
        self._buffer = bytearray()
        self._chunk_index = 0
        self._metadata_buffer = bytearray()
        self._metadata_length = 0
        self._plaintext_seen = 0
        self._plaintext_size = 0
        self._content_left = 0
        self._has_failed = False
        self._is_finished = False

    @property
    def header(self) -> Header | None:
        """The header, once enough bytes arrived to parse it."""
        return self._header

    @property
    def metadata(self) -> Metadata | None:
        """The metadata, once the chunk(s) holding it decrypted."""
        return self._metadata

    def feed(self, data: bytes) -> bytes:
        """Take the next bytes of the envelope; return the content now available."""
        self._check_usable()
        try:
            return self._feed(data)
        except DecryptionFailed:
            self._fail()
            raise

    def finish(self) -> bytes:
        """Declare the end of the envelope; return the last content and prove the whole.

        DecryptionFailed if the envelope is truncated, extended or corrupt.
        """
        self._check_usable()
        try:
            if self._aead is None and not self._start():
                raise DecryptionFailed
            # What is held back is the last chunk; a tag alone (or nothing) means the
            # envelope stopped at a chunk boundary before its flagged last chunk.
            if len(self._buffer) <= TAG_BYTES:
                raise DecryptionFailed
            content = self._open_chunk(self._buffer, is_last=True)
        except DecryptionFailed:
            self._fail()
            raise
        self._is_finished = True
        self._forget()
        return content

    def _check_usable(self) -> None:
        if self._has_failed:
            raise DecryptionFailed
        if self._is_finished:
            raise ValueError("the envelope is already finished")

    def _fail(self) -> None:
        self._has_failed = True
        self._forget()

    def _forget(self) -> None:
        self._aead = None
        self._link_key = None
        self._passphrase = None
        self._device = None
        self._buffer = bytearray()
        self._metadata_buffer = bytearray()

    def _feed(self, data: bytes) -> bytes:
        self._buffer += data
        if self._aead is None and not self._start():
            return b""
        assert self._header is not None
        sealed_chunk_size = self._header.chunk_size + TAG_BYTES
        output = bytearray()
        offset = 0
        # Strictly more than one chunk: only then is the first one known not to be the last.
        with memoryview(self._buffer) as buffered:
            while len(buffered) - offset > sealed_chunk_size:
                # No name for the slice: a live export would block the `del` below.
                output += self._open_chunk(
                    buffered[offset : offset + sealed_chunk_size], is_last=False
                )
                offset += sealed_chunk_size
        del self._buffer[:offset]
        return bytes(output)

    def _start(self) -> bool:
        """Parse the header and derive the keys; False while the header is incomplete."""
        header = self._header
        if header is None:
            header = parse_header(bytes(self._buffer[:HEADER_BYTES_MAX]))
            if header is None:
                return False
            self._header = header
        assert self._link_key is not None
        device_secret = None
        if header.is_device_bound:
            if self._device is None:
                # Not a failure either: no passphrase can help, but a device can.
                raise DeviceRequired
            assert header.ephemeral_public is not None
            assert header.sealed_device_secret is not None
            # Before Argon2: a wrong device fails without spending the passphrase's cost.
            device_secret = open_device_secret(
                self._device,
                header.ephemeral_public,
                header.sealed_device_secret,
                header.device_seal_aad,
            )
        passphrase_key = None
        if header.argon2 is not None:
            if self._passphrase is None:
                # Not a failure: the caller may ask for the passphrase and start again.
                raise PassphraseRequired
            assert header.argon2_salt is not None
            try:
                passphrase_key = derive_passphrase_key(
                    self._passphrase, header.argon2_salt, header.argon2
                )
            except ValueError:  # a passphrase with no UTF-8 form cannot be the right one
                raise DecryptionFailed from None
        keys = derive_envelope_keys(self._link_key, header.salt, passphrase_key, device_secret)
        self._aead = AESGCM(keys.key)
        self._nonce_prefix = keys.nonce_prefix
        self._link_key = None
        self._passphrase = None
        self._device = None
        del self._buffer[: len(header.raw)]
        return True

    def _open_chunk(self, sealed: bytes | bytearray | memoryview, *, is_last: bool) -> bytes:
        assert self._aead is not None
        assert self._header is not None
        if self._chunk_index >= MAX_CHUNKS:
            raise DecryptionFailed
        nonce = _nonce(self._nonce_prefix, self._chunk_index, is_last)
        try:
            plaintext = self._aead.decrypt(nonce, sealed, self._header.raw)
        except InvalidTag:
            raise DecryptionFailed from None
        self._chunk_index += 1
        return self._absorb(plaintext, is_last=is_last)

    def _absorb(self, plaintext: bytes, *, is_last: bool) -> bytes:
        """Strip the metadata record and the padding from one authenticated chunk."""
        self._plaintext_seen += len(plaintext)
        offset = 0
        if self._metadata is None:
            offset = self._absorb_metadata(plaintext)
            if self._metadata is None:
                if is_last:
                    raise DecryptionFailed
                return b""
        # The padded length is a function of the metadata, so exactly one length is valid:
        # this catches a size that disagrees with the content and any extra chunks.
        if self._plaintext_seen > self._plaintext_size or (
            is_last and self._plaintext_seen != self._plaintext_size
        ):
            raise DecryptionFailed
        content = plaintext[offset : offset + self._content_left]
        self._content_left -= len(content)
        padding = plaintext[offset + len(content) :]
        if padding.count(0) != len(padding):
            raise DecryptionFailed
        return content

    def _absorb_metadata(self, plaintext: bytes) -> int:
        """Collect the length-prefixed metadata record (it may span chunks); return how many
        bytes of `plaintext` it took."""
        collected = self._metadata_buffer
        offset = 0
        if len(collected) < _META_LENGTH.size:
            offset = min(_META_LENGTH.size - len(collected), len(plaintext))
            collected += plaintext[:offset]
            if len(collected) < _META_LENGTH.size:
                return offset
            (self._metadata_length,) = _META_LENGTH.unpack_from(collected)
            if self._metadata_length > MAX_METADATA_BYTES:
                raise DecryptionFailed
        record_end = _META_LENGTH.size + self._metadata_length
        taken = min(record_end - len(collected), len(plaintext) - offset)
        collected += plaintext[offset : offset + taken]
        offset += taken
        if len(collected) == record_end:
            metadata = _decode_metadata(bytes(collected[_META_LENGTH.size :]))
            self._plaintext_size = _plaintext_size(self._metadata_length, metadata.size)
            self._content_left = metadata.size
            self._metadata = metadata
            self._metadata_buffer = bytearray()
        return offset


def open_envelope(
    envelope: bytes,
    link_key: bytes,
    passphrase: str | None = None,
    *,
    device: DeviceUnsealer | None = None,
) -> tuple[Metadata, bytes]:
    """Decrypt a whole envelope; DecryptionFailed (or a subclass) on any problem,
    PassphraseRequired when it is locked with a passphrase and none was given,
    DeviceRequired when it is sealed to a device and none was given."""
    opener = Opener(link_key, passphrase, device=device)
    content = opener.feed(envelope) + opener.finish()
    assert opener.metadata is not None  # finish() succeeds only once the metadata decoded
    return opener.metadata, content
