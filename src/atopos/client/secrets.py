"""The two secret flows end to end.

`create_secret` seals content on this device and streams the envelope to the server in
constant memory; `reveal_secret` drives the access-path machine (protocol/access_path.py:
a stamp that reveals in one request, or challenge → proof of work → ticket that reveals, or
ticket → reveal on an older server) and opens the envelope as it streams in. The
link key is drawn here and lives only in local variables and the returned link; nothing in
this module logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path

from atopos.client.access_prover import AccessProver
from atopos.client.api import (
    AsyncRevealedEnvelope,
    AsyncSecretsApi,
    NewSecret,
    RevealedEnvelope,
    SecretsApi,
)
from atopos.client.device import DeviceLoader, LazyDevice
from atopos.client.envelope_reader import EnvelopeReader, PassphrasePrompt
from atopos.client.failures import error_for
from atopos.client.links import ManageLink, ShareLink
from atopos.client.local_files import local_content
from atopos.client.server_bits import SERVER_BITS
from atopos.clock import Clock, SystemClock
from atopos.crypto import pow as proof_of_work
from atopos.crypto.device import DevicePublic
from atopos.crypto.envelope import (
    DEFAULT_ARGON2,
    LINK_KEY_BYTES,
    Argon2Params,
    Metadata,
    Sealer,
)
from atopos.crypto.randomness import draw
from atopos.crypto.sizes import STAMP_SALT_BYTES
from atopos.errors import InvalidInput, WrongKey
from atopos.protocol.access_path import (
    AccessPath,
    AccessProofMade,
    DeviceProofMade,
    Event,
    Failed,
    MakeAccessProof,
    MakeDeviceProof,
    MakeStamp,
    MakeStampProof,
    ProofOfWorkFound,
    Revealed,
    SendRequest,
    ServerAnswered,
    SolveProofOfWork,
    StampMade,
    Step,
    Wait,
    Waited,
)
from atopos.randomness import RandomBytes, system_random_bytes

__all__ = [
    "MAX_POW_BITS",
    "CreatedSecret",
    "ProgressCallback",
    "create_secret",
    "reveal_secret",
    "reveal_secret_async",
]

# Called with (bytes transferred so far, total bytes or None when unknown).
ProgressCallback = Callable[[int, int | None], None]
# 2**26 SHA-256 calls take about a minute in CPython, half the challenge's lifetime; a
# server asking for more is broken or hostile, and we would not finish in time anyway.
MAX_POW_BITS = 26


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
    random_bytes: RandomBytes = system_random_bytes,
) -> CreatedSecret:
    """Seal `content` (bytes: a text secret; a Path: a file, streamed) and upload it.

    With `device`, the content key also needs a secret sealed to the device's X25519 key,
    and the server is given its Ed25519 key: only that device can get a ticket and open it.
    """
    if passphrase == "":
        raise InvalidInput("The passphrase must not be empty.")
    with contextlib.ExitStack() as stack:
        metadata, pieces = local_content(content, stack)
        link_key = draw(random_bytes, LINK_KEY_BYTES)
        sealer = Sealer(
            link_key,
            metadata,
            random_bytes=random_bytes,
            passphrase=passphrase,
            argon2=argon2,
            device=device,
        )
        secret = NewSecret(
            sealer.size,
            expires_in=expires_in,
            views=views,
            kind=metadata.kind,
            access_key=sealer.access_key,
            device_key=device.signing_key if device is not None else None,
        )
        record = api.create(_sealed(sealer, pieces, progress), secret)
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
    one_shot: bool = True,
    stamp: bool = True,
    assumed_bits: int | None = None,
    clock: Clock | None = None,
    random_bytes: RandomBytes = system_random_bytes,
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

    `one_shot` (the default): the ticket step also reveals (`"reveal": true`,
    docs/protocol/access.md), one request fewer; a server from before it is asked the
    two-step way. False walks the three requests from the start.

    `stamp` (the default, with `one_shot`): the walk starts with a stamp
    (docs/protocol/access.md, "Stamp: a reveal in one request"), made of `clock`'s time and
    16 bytes of `random_bytes` and solved at `assumed_bits` (None: the bits this server last
    asked of this process, else 16): one request reveals a secret with no passphrase and no
    device; any other is answered with a challenge and walked on from it, and a server from
    before stamps is asked for a challenge. False starts with the challenge.

    When `api`'s transport bounds its answers (`Transport.max_answer_bytes`, the mixnet), a
    larger secret is refused (TooLarge) before its view is spent.
    """
    this_device = LazyDevice(device)
    prover = AccessProver(link.link_key, passphrase=passphrase, ask_passphrase=ask_passphrase)
    workers = _Workers(this_device, prover, clock or SystemClock(), random_bytes)
    while True:
        path = AccessPath(
            link.secret_id,
            server=api.server,
            can_unlock=passphrase is not None or ask_passphrase is not None,
            max_pow_bits=max_pow_bits,
            rate_limit_retries=rate_limit_retries,
            max_retry_wait=max_retry_wait,
            one_shot=one_shot,
            max_answer_bytes=api.transport.max_answer_bytes,
            stamp=stamp,
            assumed_bits=_assumed_bits(api.server, assumed_bits),
        )
        try:
            return _reveal_on(api, link, path, workers, write, progress, sleep)
        except WrongKey:
            # Refused at the ticket step, so nothing was spent: a typed passphrase may be
            # typed again (a wrong link key cannot be fixed by asking). A secret with a
            # passphrase is answered with a challenge, not a stamp: ask for that at once.
            if not prover.may_ask_again():
                raise
            stamp = False
        finally:
            _learn_bits(api.server, path)


def _assumed_bits(server: str, given: int | None) -> int:
    return SERVER_BITS.assumed(server) if given is None else given


def _learn_bits(server: str, path: AccessPath) -> None:
    """Remember the bits of the challenge `path` was given, for the next stamp."""
    if path.challenge is not None:
        SERVER_BITS.learn(server, path.challenge.bits)


def _reveal_on(
    api: SecretsApi,
    link: ShareLink,
    path: AccessPath,
    workers: _Workers,
    write: Callable[[bytes], object],
    progress: ProgressCallback | None,
    sleep: Callable[[float], object],
) -> Metadata:
    """One walk of `path` to a view, and the envelope opened as it streams in."""
    with _spend_view(api, path, workers, sleep) as envelope:
        # The passphrase the access proof was made with (perhaps typed just now) opens it.
        prover = workers.prover
        reader = EnvelopeReader(
            link.link_key,
            passphrase=prover.passphrase,
            ask_passphrase=prover.ask_passphrase,
            device=workers.device,
        )
        reveal = _Reveal(reader, write, progress)
        for data in envelope:
            reveal.feed(data, envelope.size)
    return reveal.finish()


async def reveal_secret_async(
    api: AsyncSecretsApi,
    link: ShareLink,
    write: Callable[[bytes], object],
    *,
    passphrase: str | None = None,
    device: DeviceLoader | None = None,
    progress: ProgressCallback | None = None,
    one_shot: bool = True,
    stamp: bool = True,
    assumed_bits: int | None = None,
    clock: Clock | None = None,
    random_bytes: RandomBytes = system_random_bytes,
) -> Metadata:
    """`reveal_secret` for asyncio, with its defaults: the same machine and checks, 429s
    waited out with asyncio.sleep, and the proof of work and device loading run in a worker
    thread so the event loop stays free. A passphrase must be given up front. `one_shot`,
    `stamp`, `assumed_bits`, `clock` and `random_bytes` as for `reveal_secret`."""
    this_device = LazyDevice(device)
    reveal = _Reveal(
        EnvelopeReader(link.link_key, passphrase=passphrase, device=this_device), write, progress
    )
    prover = AccessProver(link.link_key, passphrase=passphrase)
    path = AccessPath(
        link.secret_id,
        server=api.server,
        can_unlock=passphrase is not None,
        max_pow_bits=MAX_POW_BITS,
        one_shot=one_shot,
        max_answer_bytes=api.transport.max_answer_bytes,
        stamp=stamp,
        assumed_bits=_assumed_bits(api.server, assumed_bits),
    )
    workers = _Workers(this_device, prover, clock or SystemClock(), random_bytes)
    try:
        async with _spend_view_async(api, path, workers) as envelope:
            async for data in envelope:
                reveal.feed(data, envelope.size)
    finally:
        _learn_bits(api.server, path)
    return reveal.finish()


class _Reveal:
    """The envelope as it arrives: opened piece by piece, content passed to `write`."""

    def __init__(
        self,
        reader: EnvelopeReader,
        write: Callable[[bytes], object],
        progress: ProgressCallback | None,
    ) -> None:
        self._reader = reader
        self._write = write
        self._progress = progress
        self._received = 0

    def feed(self, data: bytes, size: int | None) -> None:
        self._received += len(data)
        if content := self._reader.feed(data):
            self._write(content)
        if self._progress is not None:
            self._progress(self._received, size)

    def finish(self) -> Metadata:
        if content := self._reader.finish():
            self._write(content)
        metadata = self._reader.metadata
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


@dataclasses.dataclass(frozen=True, slots=True)
class _Workers:
    """What does the client's own steps: this machine's device, the access prover, and
    the clock and randomness a stamp is made of."""

    device: LazyDevice
    prover: AccessProver
    clock: Clock
    random_bytes: RandomBytes


@contextlib.contextmanager
def _spend_view(
    api: SecretsApi, path: AccessPath, workers: _Workers, sleep: Callable[[float], object]
) -> Iterator[RevealedEnvelope]:
    """Carry out the machine's steps until it reveals (the envelope streams while the block
    runs) or fails (its error is raised)."""
    step = path.start()
    while True:
        if isinstance(step, SendRequest) and step.is_reveal:
            with api.open_reveal(step) as (answer, envelope):
                step = path.receive(ServerAnswered(answer))
                if isinstance(step, Revealed) and envelope is not None:
                    yield envelope
                    return
        elif isinstance(step, SendRequest):
            step = path.receive(ServerAnswered(api.send(step)))
        elif isinstance(step, Wait):
            sleep(step.seconds)
            step = path.receive(Waited())
        else:
            step = path.receive(_work(step, workers))


@contextlib.asynccontextmanager
async def _spend_view_async(
    api: AsyncSecretsApi, path: AccessPath, workers: _Workers
) -> AsyncIterator[AsyncRevealedEnvelope]:
    """`_spend_view` for asyncio."""
    step = path.start()
    while True:
        if not isinstance(step, SendRequest) or not step.is_reveal:
            step = path.receive(await _next_event(api, step, workers))
            continue
        async with api.open_reveal(step) as (answer, envelope):
            step = path.receive(ServerAnswered(answer))
            if isinstance(step, Revealed) and envelope is not None:
                yield envelope
                return


async def _next_event(api: AsyncSecretsApi, step: Step, workers: _Workers) -> Event:
    if isinstance(step, SendRequest):
        return ServerAnswered(await api.send(step))
    if isinstance(step, Wait):
        await asyncio.sleep(step.seconds)
        return Waited()
    # The proof of work (and a device store that may ask for its passphrase) would hold
    # the event loop: a worker thread does it.
    return await asyncio.to_thread(_work, step, workers)


def _work(step: Step, workers: _Workers) -> Event:
    """The event after a step the client does on its own (no server, no waiting)."""
    if isinstance(step, MakeStamp):
        return StampMade(int(workers.clock.now()), draw(workers.random_bytes, STAMP_SALT_BYTES))
    if isinstance(step, MakeStampProof):
        return AccessProofMade(workers.prover.sign_stamp(step))
    if isinstance(step, MakeAccessProof):
        return AccessProofMade(workers.prover.sign(step))
    if isinstance(step, MakeDeviceProof):
        return DeviceProofMade(workers.device.sign_proof(step.secret_id, step.challenge))
    if isinstance(step, SolveProofOfWork):
        return ProofOfWorkFound(proof_of_work.solve(step.challenge, step.bits))
    if isinstance(step, Failed):
        raise error_for(step.failure)
    raise AssertionError(f"unexpected step {step!r}")
