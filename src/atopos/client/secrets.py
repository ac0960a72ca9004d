"""The two secret flows end to end.

`create_secret` seals content on this device and streams the envelope to the server in
constant memory; `reveal_secret` walks challenge → proof of work → ticket → reveal and opens
the envelope as it streams in. The link key is drawn here and lives only in local variables
and the returned link; nothing in this module logs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import mimetypes
import os
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeVar

from atopos.client.api import RevealedEnvelope, SecretsApi
from atopos.client.device import DeviceLoader, LazyDevice
from atopos.client.envelope_reader import EnvelopeReader, PassphrasePrompt
from atopos.client.links import ManageLink, ShareLink
from atopos.client.local_files import open_without_waiting
from atopos.crypto import pow as proof_of_work
from atopos.crypto.base64url import b64url_decode
from atopos.crypto.device import DevicePublic
from atopos.crypto.envelope import (
    DEFAULT_ARGON2,
    LINK_KEY_BYTES,
    Argon2Params,
    Metadata,
    Sealer,
)
from atopos.crypto.errors import PassphraseRequired
from atopos.errors import InvalidInput, RateLimited, Refused

__all__ = [
    "MAX_POW_BITS",
    "CreatedSecret",
    "ProgressCallback",
    "create_secret",
    "reveal_secret",
]

# Called with (bytes transferred so far, total bytes or None when unknown).
ProgressCallback = Callable[[int, int | None], None]
# 2**26 SHA-256 calls take about a minute in CPython, half the challenge's lifetime; a
# server asking for more is broken or hostile, and we would not finish in time anyway.
MAX_POW_BITS = 26
_READ_BYTES = 256 * 1024
_T = TypeVar("_T")
_WRONG_DEVICE = "This secret is bound to another device; it can only be revealed there."
_NO_DEVICE = (
    "This secret is bound to a device and this machine has none; "
    "it can only be revealed on that device."
)


@dataclasses.dataclass(frozen=True, slots=True)
class CreatedSecret:
    """The links to hand out (`share_link`) and to keep (`manage_link`)."""

    share_link: ShareLink
    manage_link: ManageLink
    expires_at: int


def create_secret(
    api: SecretsApi,
    content: bytes | Path,
    *,
    expires_in: int,
    views: int = 1,
    passphrase: str | None = None,
    progress: ProgressCallback | None = None,
    argon2: Argon2Params = DEFAULT_ARGON2,
    device: DevicePublic | None = None,
) -> CreatedSecret:
    """Seal `content` (bytes: a text secret; a Path: a file, streamed) and upload it.

    With `device`, the content key also needs a secret sealed to the device's X25519 key,
    and the server is given its Ed25519 key: only that device can get a ticket and open it.
    """
    if passphrase == "":
        raise InvalidInput("The passphrase must not be empty.")
    with contextlib.ExitStack() as stack:
        if isinstance(content, Path):
            file, size = _open_regular_file(content)
            stack.enter_context(file)
            metadata = Metadata(
                kind="file",
                size=size,
                name=_portable_name(content.name),
                media_type=mimetypes.guess_type(content.name, strict=False)[0],
            )
            pieces = _read_exactly(file, size)
        else:
            metadata = Metadata(kind="text", size=len(content))
            pieces = _slices(content)
        link_key = os.urandom(LINK_KEY_BYTES)
        sealer = Sealer(
            link_key,
            metadata,
            random_bytes=os.urandom,
            passphrase=passphrase,
            argon2=argon2,
            device=device,
        )
        record = api.create(
            _sealed(sealer, pieces, progress),
            sealer.size,
            expires_in=expires_in,
            views=views,
            kind=metadata.kind,
            device_key=device.signing_key if device is not None else None,
        )
    return CreatedSecret(
        share_link=ShareLink(api.server, record.secret_id, link_key),
        manage_link=ManageLink(api.server, record.secret_id, record.manage_token),
        expires_at=record.expires_at,
    )


def reveal_secret(
    api: SecretsApi,
    link: ShareLink,
    write: Callable[[bytes], object],
    *,
    passphrase: str | None = None,
    ask_passphrase: PassphrasePrompt | None = None,
    progress: ProgressCallback | None = None,
    sleep: Callable[[float], object] = time.sleep,
    rate_limit_retries: int = 3,
    max_retry_wait: int = 60,
    max_pow_bits: int = MAX_POW_BITS,
    device: DeviceLoader | None = None,
) -> Metadata:
    """Spend one view of `link`'s secret and pass its content to `write` as it decrypts.

    Content reaches `write` before the envelope is proven whole: only when this returns
    is it complete and authentic, so write somewhere provisional and commit afterwards.
    `ask_passphrase` is called when the envelope needs a passphrase that was not given (or
    the one it returned was wrong); without it such an envelope raises PassphraseRequired.
    A 429 is waited out (`Retry-After`, at most `max_retry_wait` seconds) up to
    `rate_limit_retries` times before RateLimited is raised.

    `device` loads this machine's device keys (None when it has none); it is called at most
    once, only for a secret bound to a device, before the proof of work. A bound secret
    without the right device is refused at the ticket step (Refused), before any view is
    spent.
    """
    this_device = LazyDevice(device)
    reader = EnvelopeReader(
        link.link_key, passphrase=passphrase, ask_passphrase=ask_passphrase, device=this_device
    )
    with contextlib.ExitStack() as stack:
        envelope = _retrying(
            lambda: stack.enter_context(
                _spend_view(
                    api,
                    link.secret_id,
                    max_pow_bits,
                    this_device,
                    can_unlock=passphrase is not None or ask_passphrase is not None,
                )
            ),
            sleep=sleep,
            retries=rate_limit_retries,
            max_wait=max_retry_wait,
        )
        received = 0
        for data in envelope:
            received += len(data)
            if content := reader.feed(data):
                write(content)
            if progress is not None:
                progress(received, envelope.size)
        if content := reader.finish():
            write(content)
    metadata = reader.metadata
    assert metadata is not None  # finish() succeeds only after the metadata decoded
    return metadata


def _sealed(
    sealer: Sealer, content: Iterable[bytes], progress: ProgressCallback | None
) -> Iterator[bytes]:
    sent = 0

    def advanced(envelope_bytes: bytes) -> bytes:
        nonlocal sent
        sent += len(envelope_bytes)
        if progress is not None:
            progress(sent, sealer.size)
        return envelope_bytes

    for piece in content:
        if envelope_bytes := sealer.update(piece):
            yield advanced(envelope_bytes)
    for envelope_bytes in sealer.finalize_iter():
        yield advanced(envelope_bytes)


@contextlib.contextmanager
def _spend_view(
    api: SecretsApi, secret_id: str, max_pow_bits: int, device: LazyDevice, *, can_unlock: bool
) -> Iterator[RevealedEnvelope]:
    challenge = api.challenge(secret_id)
    if challenge.has_passphrase and not can_unlock:
        # Said before any view is spent: without a passphrase the view would be wasted.
        raise PassphraseRequired
    if challenge.bits > max_pow_bits:
        raise Refused("The server demands more proof of work than this client will do.")
    proof = None
    refused = None
    if challenge.is_bound:
        # Load (perhaps asking for the Extra Lock passphrase) before the work, so that the
        # challenge is still fresh when the ticket is asked for.
        keys = device.get()
        if keys is None:
            # Asked anyway: the server's answer, not this machine, decides (and records it).
            refused = _NO_DEVICE
        else:
            proof = keys.sign_proof(b64url_decode(secret_id), challenge.challenge)
            refused = _WRONG_DEVICE
    nonce = proof_of_work.solve(challenge.challenge.encode("utf-8"), challenge.bits)
    if refused is None:
        ticket = api.ticket(secret_id, challenge.challenge, nonce)
    else:
        ticket = api.ticket(
            secret_id, challenge.challenge, nonce, device_proof=proof, refused=refused
        )
    with api.reveal(secret_id, ticket.ticket) as envelope:
        yield envelope


def _retrying(
    call: Callable[[], _T], *, sleep: Callable[[float], object], retries: int, max_wait: int
) -> _T:
    attempt = 0
    while True:
        try:
            return call()
        except RateLimited as exc:
            if attempt >= retries or exc.retry_after > max_wait:
                raise
            attempt += 1
            sleep(exc.retry_after)


def _open_regular_file(path: Path) -> tuple[BinaryIO, int]:
    """`path` open for reading, and its size; InvalidInput unless it is a regular file.

    The size goes into the envelope up front, so it must be known and must not change. A
    FIFO does not block (open_without_waiting); reads block again once it is checked.
    """
    descriptor, info = open_without_waiting(path)
    try:
        if not stat.S_ISREG(info.st_mode):
            raise InvalidInput(f"{path} is not a regular file; pipe anything else to stdin.")
        if sys.platform != "win32":
            import fcntl

            mode = fcntl.fcntl(descriptor, fcntl.F_GETFL)
            fcntl.fcntl(descriptor, fcntl.F_SETFL, mode & ~os.O_NONBLOCK)
        return os.fdopen(descriptor, "rb"), info.st_size
    except BaseException:
        os.close(descriptor)
        raise


def _read_exactly(file: BinaryIO, size: int) -> Iterator[bytes]:
    left = size
    while left:
        piece = file.read(min(_READ_BYTES, left))
        if not piece:
            raise InvalidInput("The file shrank while it was being sent.")
        left -= len(piece)
        yield piece
    if file.read(1):
        raise InvalidInput("The file grew while it was being sent.")


def _slices(content: bytes) -> Iterator[bytes]:
    with memoryview(content) as view:
        for start in range(0, len(content), _READ_BYTES):
            yield bytes(view[start : start + _READ_BYTES])


def _portable_name(name: str) -> str | None:
    # A file name that is not valid Unicode (undecodable bytes on POSIX) has no UTF-8 form
    # for the envelope; the reader then picks a fallback name.
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return name or None
