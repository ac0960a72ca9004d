"""Rebuild tests/vectors/access_path.json (docs/protocol/access.md, "Client transcripts").

    .venv/bin/python tests/vectors/generate_access_path_vectors.py          # rewrite the file
    .venv/bin/python tests/vectors/generate_access_path_vectors.py --check  # exit 1 if stale

The transcripts are written out by hand below from the spec (nothing imported from
`atopos`); only the proof-of-work nonces are computed, with hashlib, so that a twin can also
check them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PATH = HERE / "access_path.json"

SERVER = "https://atopos.example"
SECRET_ID = "AAECAwQFBgcICQoLDA0ODw"  # bytes 0..15
API = f"/api/v1/secrets/{SECRET_ID}"
BITS = 6
CHALLENGE = "Y2hhbGxlbmdlLW9uZQ"  # opaque to clients; any string will do
CHALLENGE_2 = "Y2hhbGxlbmdlLXR3bw"
TICKET = "dGlja2V0LW9uZQ"
PROOF = base64.urlsafe_b64encode(bytes(range(64))).rstrip(b"=").decode()
ACCESS_PROOF = base64.urlsafe_b64encode(bytes(range(64, 128))).rstrip(b"=").decode()
ARGON2 = {"memory_kib": 65536, "iterations": 3, "lanes": 4, "salt": "AAECAwQFBgcICQoLDA0ODw"}
WRONG_KEY = "The key in the link or the passphrase is wrong; no view was spent."
# The clock the driver reads, and the stamp's time: rounded down to a multiple of 60 s.
STAMP_TIME = 1_900_000_000
STAMP_T = STAMP_TIME - STAMP_TIME % 60
STAMP_SALT = base64.urlsafe_b64encode(bytes(range(16, 32))).rstrip(b"=").decode()
# access.md, "Stamp: a reveal in one request": "s1." id "." time "." salt.
STAMP = f"s1.{SECRET_ID}.{STAMP_T}.{STAMP_SALT}"
# A relay's trap: a future stamp handed out as a challenge (access.md, "Stamp", threat notes).
FUTURE_STAMP = f"s1.{SECRET_ID}.{STAMP_T + 86_400}.{STAMP_SALT}"
MAX_ANSWER_BYTES = 1000

TICKET_REFUSED = "The server refused the proof of work (the challenge may have expired)."
REVEAL_REFUSED = "The access ticket was refused (expired or already used)."
WRONG_DEVICE = "This secret is bound to another device; it can only be revealed there."
NO_DEVICE = (
    "This secret is bound to a device and this machine has none; "
    "it can only be revealed on that device."
)
GONE = "This secret does not exist: it expired, was already viewed, or was deleted."
STAMP_REFUSED = "The server refused the stamp (it was already used)."
TOO_MUCH_WORK = "The server demands more proof of work than this client will do."
NOT_UNDERSTOOD = f"The server at {SERVER} sent an answer Atopos does not understand."

FORMAT = [
    "Client side of the access path (docs/protocol/access.md, 'Client transcripts').",
    "Each transcript starts a fresh client for `secret_id` with `options` and alternates:",
    "`client` is what the client must do next, `then` is what happens next (fed to it).",
    "client.request {method, path, json|null}: send it; json null means no body.",
    "  `is_reveal` true: the answer's body is the envelope (streamed on success).",
    "client.access_proof {secret_id, challenge, argon2|null}: derive the access key from the",
    "  link key (and, with argon2 {memory_kib, iterations, lanes, salt}, the passphrase) and",
    "  sign (access.md, 'Key-knowledge proof').",
    "client.stamp_proof {secret_id, stamp}: derive the access key from the link key alone and",
    "  sign the stamp under the stamp label 'atopos/stamp-proof/v1' (access.md, 'Stamp');",
    "  answered with then.access_proof.",
    "client.device_proof {secret_id, challenge}: sign with the device key (device.md).",
    "client.proof_of_work {challenge, bits}: find a nonce (access.md, 'Proof of work').",
    "client.wait {seconds}: wait out a 429, then start again from the challenge.",
    "client.stamp {}: read the clock (integer Unix seconds) and draw 16 random bytes; then the",
    "  client makes stamp = 's1.' || secret_id || '.' || decimal(t) || '.' || salt (access.md,",
    "  'Stamp: a reveal in one request') with t = time rounded down to a multiple of 60,",
    "  asks client.stamp_proof, client.proof_of_work with the stamp at",
    "  options.assumed_bits, and sends one ticket request {stamp, nonce, access_proof,",
    "  reveal: true, max_bytes?}. Its answer: unread (the envelope): revealed; JSON with",
    "  stamp_refused: the challenge step's answer (go on exactly as after it); 422: a server",
    "  without stamps: ask for a challenge (stamp off from then on); else as a ticket step.",
    "  A 429 is waited out and the walk starts again with a new client.stamp, unless a",
    "  challenge was answered or asked for (stamp_refused, 422): then with the challenge.",
    "options.one_shot (absent: true, the default; every transcript names it): the ticket",
    "  request carries reveal: true and its answer is the envelope; a 422 to it is an older",
    "  server: ask for the ticket alone; a 200 with a ticket (JSON) is a server that ignored",
    "  reveal: go on with the reveal step. false: the three-step walk.",
    "options.stamp (absent: true, the default; every transcript names it; only with",
    "  one_shot): the walk starts with client.stamp, solved at options.assumed_bits (absent:",
    "  16); no stamp is made when assumed_bits is over max_pow_bits (the challenge walk).",
    "options.max_answer_bytes (absent: none): every request that may reveal carries it as",
    "  max_bytes; a 413 {error: answer_too_large, size} to it fails too_large.",
    "client.revealed: terminal, one view spent, the reveal answer's body is the envelope.",
    "client.failed {error, message, retry_after?}: terminal; error is one of gone, refused,",
    "  wrong_key, rate_limited, passphrase_required, network; message is the Python client's",
    "  sentence (a twin may word its own), retry_after only for rate_limited.",
    "then.answer {status, json?|body?, retry_after?}: the server's answer; json is a JSON",
    "  value to encode, body raw text, retry_after the Retry-After header. Neither json nor",
    "  body: the body was not read (a successful is_reveal answer whose media type is not",
    "  application/json: the envelope, streamed); a driver reads every other answer.",
    "then.access_proof {proof: base64url}: the access proof made (over a challenge or a stamp).",
    "A challenge answer whose challenge is not base64url (^[A-Za-z0-9_-]+$), or whose bits are",
    "  negative, is an answer not understood: nothing is signed or solved over it.",
    "then.device_proof {proof: base64url|null}: null when this machine has no device.",
    "then.nonce: the nonce found (it solves the challenge at the bits asked).",
    "then.waited: the wait is over.",
    "then.stamp {time, salt: base64url}: the clock read and the 16 bytes drawn.",
]


def solve(challenge: str, bits: int) -> int:
    nonce = 0
    while True:
        digest = hashlib.sha256(f"{challenge}:{nonce}".encode()).digest()
        if int.from_bytes(digest, "big") >> (256 - bits) == 0:
            return nonce
        nonce += 1


def challenge_request() -> dict[str, Any]:
    return {"request": {"method": "POST", "path": f"{API}/challenge", "json": None}}


def challenge_answer(challenge: str = CHALLENGE, bits: int = BITS, **flags: Any) -> Any:
    body = {"challenge": challenge, "bits": bits, "expires_at": 1_900_000_120, **flags}
    return {"answer": {"status": 200, "json": body}}


def solving(challenge: str = CHALLENGE, bits: int = BITS) -> list[dict[str, Any]]:
    return [
        {
            "client": {"proof_of_work": {"challenge": challenge, "bits": bits}},
            "then": {"nonce": solve(challenge, bits)},
        }
    ]


def ticket_request(
    challenge: str = CHALLENGE,
    proof: str | None = None,
    access_proof: str | None = None,
    *,
    reveal: bool = False,
    bits: int = BITS,
) -> dict[str, Any]:
    body: dict[str, Any] = {"challenge": challenge, "nonce": solve(challenge, bits)}
    if access_proof is not None:
        body["access_proof"] = access_proof
    if proof is not None:
        body["device_proof"] = proof
    if reveal:
        body["reveal"] = True
        request = {"method": "POST", "path": f"{API}/ticket", "json": body, "is_reveal": True}
        return {"request": request}
    return {"request": {"method": "POST", "path": f"{API}/ticket", "json": body}}


TICKET_ANSWER = {"answer": {"status": 200, "json": {"ticket": TICKET, "expires_at": 1_900_000_060}}}
REVEAL_REQUEST = {
    "request": {
        "method": "POST",
        "path": f"{API}/reveal",
        "json": {"ticket": TICKET},
        "is_reveal": True,
    }
}


def up_to_reveal(challenge: str = CHALLENGE, **flags: bool) -> list[dict[str, Any]]:
    return [
        {"client": challenge_request(), "then": challenge_answer(challenge, **flags)},
        *solving(challenge),
        {"client": ticket_request(challenge), "then": TICKET_ANSWER},
    ]


def access_proving(challenge: str = CHALLENGE, argon2: Any = None) -> dict[str, Any]:
    asked = {"secret_id": SECRET_ID, "challenge": challenge, "argon2": argon2}
    return {"client": {"access_proof": asked}, "then": {"access_proof": {"proof": ACCESS_PROOF}}}


def keyed(**flags: Any) -> Any:
    """A challenge answer of a server with the key-knowledge proof."""
    return challenge_answer(has_access_key=True, argon2=None, **flags)


def error(status: int, code: str, retry_after: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"status": status, "json": {"error": code, "message": "Nope."}}
    if retry_after is not None:
        answer["retry_after"] = retry_after
    return {"answer": answer}


def failed(kind: str, message: str, **extra: int) -> dict[str, Any]:
    return {"client": {"failed": {"error": kind, "message": message, **extra}}}


REVEALED = {"client": {"revealed": {}}}
OPTIONS = {
    "can_unlock": False,
    "max_pow_bits": 26,
    "rate_limit_retries": 3,
    "max_retry_wait": 60,
    "one_shot": False,
    "stamp": False,
}
STAMPING = {"one_shot": True, "stamp": True, "assumed_bits": BITS}
UNREAD = {"answer": {"status": 200}}


def stamping() -> list[dict[str, Any]]:
    """The stamp made, signed with the link key alone, and solved at the assumed bits."""
    return [
        {"client": {"stamp": {}}, "then": {"stamp": {"time": STAMP_TIME, "salt": STAMP_SALT}}},
        {
            "client": {"stamp_proof": {"secret_id": SECRET_ID, "stamp": STAMP}},
            "then": {"access_proof": {"proof": ACCESS_PROOF}},
        },
        *solving(STAMP),
    ]


def stamp_request(max_bytes: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "stamp": STAMP,
        "nonce": solve(STAMP, BITS),
        "access_proof": ACCESS_PROOF,
        "reveal": True,
    }
    if max_bytes is not None:
        body["max_bytes"] = max_bytes
    return {"request": {"method": "POST", "path": f"{API}/ticket", "json": body, "is_reveal": True}}


def one_shot_after_challenge(
    challenge: str = CHALLENGE, bits: int = BITS, argon2: Any = None
) -> list[dict[str, Any]]:
    """A keyed secret's walk on from its challenge answer: proof, work, revealing ticket."""
    return [
        access_proving(challenge, argon2),
        *solving(challenge, bits),
        {
            "client": ticket_request(challenge, access_proof=ACCESS_PROOF, reveal=True, bits=bits),
            "then": UNREAD,
        },
        REVEALED,
    ]


def stamp_transcripts() -> list[dict[str, Any]]:
    return [
        transcript(
            "stamp",
            "one request: the stamp, its access proof and work, answered with the envelope",
            [*stamping(), {"client": stamp_request(), "then": UNREAD}, REVEALED],
            **STAMPING,
        ),
        transcript(
            "stamp refused: passphrase",
            "answered with a challenge (access): on as after the challenge step",
            [
                *stamping(),
                {
                    "client": stamp_request(),
                    "then": challenge_answer(
                        has_access_key=True,
                        has_passphrase=True,
                        argon2=ARGON2,
                        stamp_refused="access",
                    ),
                },
                *one_shot_after_challenge(argon2=ARGON2),
            ],
            can_unlock=True,
            **STAMPING,
        ),
        transcript(
            "stamp refused: passphrase, none at hand",
            "answered with a challenge that wants a passphrase: stops before more work",
            [
                *stamping(),
                {
                    "client": stamp_request(),
                    "then": challenge_answer(
                        has_access_key=True,
                        has_passphrase=True,
                        argon2=ARGON2,
                        stamp_refused="access",
                    ),
                },
                failed("passphrase_required", "This secret needs its passphrase."),
            ],
            **STAMPING,
        ),
        transcript(
            "stamp refused: bound",
            "answered with a challenge (access) for a bound secret: access and device proofs",
            [
                *stamping(),
                {
                    "client": stamp_request(),
                    "then": keyed(is_bound=True, stamp_refused="access"),
                },
                access_proving(),
                {
                    "client": {"device_proof": {"secret_id": SECRET_ID, "challenge": CHALLENGE}},
                    "then": {"device_proof": {"proof": PROOF}},
                },
                *solving(),
                {
                    "client": ticket_request(proof=PROOF, access_proof=ACCESS_PROOF, reveal=True),
                    "then": UNREAD,
                },
                REVEALED,
            ],
            **STAMPING,
        ),
        transcript(
            "stamp refused: clock",
            "the stamp's time is outside the server's window: its challenge, then one shot",
            [
                *stamping(),
                {"client": stamp_request(), "then": keyed(stamp_refused="clock")},
                *one_shot_after_challenge(),
            ],
            **STAMPING,
        ),
        transcript(
            "stamp refused: bits",
            "the server asks more bits than assumed: its challenge at its bits, then one shot",
            [
                *stamping(),
                {
                    "client": stamp_request(),
                    "then": challenge_answer(
                        bits=BITS + 2, has_access_key=True, argon2=None, stamp_refused="bits"
                    ),
                },
                *one_shot_after_challenge(bits=BITS + 2),
            ],
            **STAMPING,
        ),
        transcript(
            "stamp refused: bits, too much work",
            "the challenge asks more than the client will solve: stop before work",
            [
                *stamping(),
                {
                    "client": stamp_request(),
                    "then": challenge_answer(
                        bits=27, has_access_key=True, argon2=None, stamp_refused="bits"
                    ),
                },
                failed("refused", TOO_MUCH_WORK),
            ],
            **STAMPING,
        ),
        transcript(
            "stamp, older server",
            "a 422 to the stamp (nothing spent): the challenge walk, one shot",
            [
                *stamping(),
                {"client": stamp_request(), "then": error(422, "invalid")},
                {"client": challenge_request(), "then": keyed()},
                *one_shot_after_challenge(),
            ],
            **STAMPING,
        ),
        transcript(
            "stamp, wrong key",
            "the access proof over the stamp is refused: nothing spent",
            [
                *stamping(),
                {"client": stamp_request(), "then": error(403, "wrong_key")},
                failed("wrong_key", WRONG_KEY),
            ],
            **STAMPING,
        ),
        transcript(
            "stamp, already used",
            "a 403 other than wrong_key: the stamp was recorded already",
            [
                *stamping(),
                {"client": stamp_request(), "then": error(403, "refused")},
                failed("refused", STAMP_REFUSED),
            ],
            **STAMPING,
        ),
        transcript(
            "stamp, gone",
            "404 to the stamp",
            [
                *stamping(),
                {"client": stamp_request(), "then": error(404, "not_found")},
                failed("gone", GONE),
            ],
            **STAMPING,
        ),
        transcript(
            "stamp, rate-limited",
            "a 429 to the stamp is waited out, then a new stamp (the same here: one clock, one"
            " salt)",
            [
                *stamping(),
                {"client": stamp_request(), "then": error(429, "rate_limited", "5")},
                {"client": {"wait": {"seconds": 5}}, "then": {"waited": {}}},
                *stamping(),
                {"client": stamp_request(), "then": UNREAD},
                REVEALED,
            ],
            **STAMPING,
        ),
        transcript(
            "stamp refused, then rate-limited",
            "after a challenge answer the walk is a challenge's: a 429 starts it again from one",
            [
                *stamping(),
                {"client": stamp_request(), "then": keyed(stamp_refused="clock")},
                access_proving(),
                *solving(),
                {
                    "client": ticket_request(access_proof=ACCESS_PROOF, reveal=True),
                    "then": error(429, "rate_limited", "2"),
                },
                {"client": {"wait": {"seconds": 2}}, "then": {"waited": {}}},
                {"client": challenge_request(), "then": error(404, "not_found")},
                failed("gone", GONE),
            ],
            **STAMPING,
        ),
        transcript(
            "stamp, too large",
            "max_bytes with the stamp; a 413 answer_too_large: nothing spent",
            [
                *stamping(),
                {
                    "client": stamp_request(MAX_ANSWER_BYTES),
                    "then": {
                        "answer": {
                            "status": 413,
                            "json": {"error": "answer_too_large", "message": "No.", "size": 5000},
                        }
                    },
                },
                failed(
                    "too_large",
                    f"This secret is 5000 bytes, more than the {MAX_ANSWER_BYTES} bytes an "
                    "answer can carry on this connection; no view was spent.",
                ),
            ],
            max_answer_bytes=MAX_ANSWER_BYTES,
            **STAMPING,
        ),
        transcript(
            "stamp, more work assumed than allowed",
            "assumed_bits over max_pow_bits: no stamp, the challenge walk",
            [{"client": challenge_request(), "then": keyed()}, *one_shot_after_challenge()],
            **{**STAMPING, "assumed_bits": 27},
        ),
        transcript(
            "stamp refused, the challenge a stamp",
            "a challenge answer whose challenge is a (future) stamp: not understood, nothing"
            " signed or solved over it",
            [
                *stamping(),
                {
                    "client": stamp_request(),
                    "then": challenge_answer(
                        FUTURE_STAMP, has_access_key=True, argon2=None, stamp_refused="clock"
                    ),
                },
                failed("network", NOT_UNDERSTOOD),
            ],
            **STAMPING,
        ),
        transcript(
            "challenge a stamp",
            "a challenge step answered with a (future) stamp as its challenge: not understood,"
            " nothing signed or solved over it",
            [
                {
                    "client": challenge_request(),
                    "then": challenge_answer(FUTURE_STAMP, has_access_key=True, argon2=None),
                },
                failed("network", NOT_UNDERSTOOD),
            ],
            one_shot=True,
        ),
        transcript(
            "challenge not base64url",
            "a challenge with a character outside base64url: not understood",
            [
                {"client": challenge_request(), "then": challenge_answer("Y2hh/bGxlbmdl")},
                failed("network", NOT_UNDERSTOOD),
            ],
        ),
        transcript(
            "challenge with negative bits",
            "bits below 0: not understood (nothing solved, nothing remembered)",
            [
                {"client": challenge_request(), "then": challenge_answer(bits=-1)},
                failed("network", NOT_UNDERSTOOD),
            ],
        ),
        transcript(
            "stamp, unreadable answer",
            "a JSON answer to the stamp that is no stamp_refused challenge",
            [
                *stamping(),
                {"client": stamp_request(), "then": challenge_answer()},
                failed("network", NOT_UNDERSTOOD),
            ],
            **STAMPING,
        ),
    ]


def transcript(name: str, about: str, steps: list[dict[str, Any]], **options: Any) -> Any:
    return {
        "name": name,
        "about": about,
        "secret_id": SECRET_ID,
        "server": SERVER,
        "options": {**OPTIONS, **options},
        "steps": steps,
    }


def transcripts() -> list[dict[str, Any]]:
    return [
        transcript(
            "success",
            "challenge, proof of work, ticket, reveal",
            [
                *up_to_reveal(),
                {"client": REVEAL_REQUEST, "then": {"answer": {"status": 200}}},
                REVEALED,
            ],
        ),
        transcript(
            "bound secret",
            "the device proof is made before the work and sent along",
            [
                {"client": challenge_request(), "then": challenge_answer(is_bound=True)},
                {
                    "client": {"device_proof": {"secret_id": SECRET_ID, "challenge": CHALLENGE}},
                    "then": {"device_proof": {"proof": PROOF}},
                },
                *solving(),
                {"client": ticket_request(proof=PROOF), "then": TICKET_ANSWER},
                {"client": REVEAL_REQUEST, "then": {"answer": {"status": 200}}},
                REVEALED,
            ],
        ),
        transcript(
            "bound secret, wrong device",
            "the server refuses the proof at the ticket",
            [
                {"client": challenge_request(), "then": challenge_answer(is_bound=True)},
                {
                    "client": {"device_proof": {"secret_id": SECRET_ID, "challenge": CHALLENGE}},
                    "then": {"device_proof": {"proof": PROOF}},
                },
                *solving(),
                {"client": ticket_request(proof=PROOF), "then": error(403, "refused")},
                failed("refused", WRONG_DEVICE),
            ],
        ),
        transcript(
            "bound secret, no device",
            "asked anyway without a proof: the server decides",
            [
                {"client": challenge_request(), "then": challenge_answer(is_bound=True)},
                {
                    "client": {"device_proof": {"secret_id": SECRET_ID, "challenge": CHALLENGE}},
                    "then": {"device_proof": {"proof": None}},
                },
                *solving(),
                {"client": ticket_request(), "then": error(403, "refused")},
                failed("refused", NO_DEVICE),
            ],
        ),
        transcript(
            "passphrase secret, none at hand",
            "stops before any work or view",
            [
                {"client": challenge_request(), "then": challenge_answer(has_passphrase=True)},
                failed("passphrase_required", "This secret needs its passphrase."),
            ],
        ),
        transcript(
            "passphrase secret",
            "with a passphrase at hand the walk goes on",
            [
                *up_to_reveal(has_passphrase=True),
                {"client": REVEAL_REQUEST, "then": {"answer": {"status": 200}}},
                REVEALED,
            ],
            can_unlock=True,
        ),
        transcript(
            "keyed secret",
            "the access proof is made before the work and sent along",
            [
                {"client": challenge_request(), "then": keyed()},
                access_proving(),
                *solving(),
                {"client": ticket_request(access_proof=ACCESS_PROOF), "then": TICKET_ANSWER},
                {"client": REVEAL_REQUEST, "then": {"answer": {"status": 200}}},
                REVEALED,
            ],
        ),
        transcript(
            "keyed secret with a passphrase",
            "the Argon2id fields of the challenge go to the access proof",
            [
                {
                    "client": challenge_request(),
                    "then": challenge_answer(
                        has_access_key=True, has_passphrase=True, argon2=ARGON2
                    ),
                },
                access_proving(argon2=ARGON2),
                *solving(),
                {"client": ticket_request(access_proof=ACCESS_PROOF), "then": TICKET_ANSWER},
                {"client": REVEAL_REQUEST, "then": {"answer": {"status": 200}}},
                REVEALED,
            ],
            can_unlock=True,
        ),
        transcript(
            "keyed secret, wrong key",
            "the server refuses the access proof at the ticket: nothing spent",
            [
                {"client": challenge_request(), "then": keyed()},
                access_proving(),
                *solving(),
                {
                    "client": ticket_request(access_proof=ACCESS_PROOF),
                    "then": error(403, "wrong_key"),
                },
                failed("wrong_key", WRONG_KEY),
            ],
        ),
        transcript(
            "keyed and bound secret",
            "the access proof, then the device proof, both sent along",
            [
                {"client": challenge_request(), "then": keyed(is_bound=True)},
                access_proving(),
                {
                    "client": {"device_proof": {"secret_id": SECRET_ID, "challenge": CHALLENGE}},
                    "then": {"device_proof": {"proof": PROOF}},
                },
                *solving(),
                {
                    "client": ticket_request(proof=PROOF, access_proof=ACCESS_PROOF),
                    "then": TICKET_ANSWER,
                },
                {"client": REVEAL_REQUEST, "then": {"answer": {"status": 200}}},
                REVEALED,
            ],
        ),
        transcript(
            "keyed passphrase secret, none at hand",
            "stops before any work or view, like an unkeyed one",
            [
                {
                    "client": challenge_request(),
                    "then": challenge_answer(
                        has_access_key=True, has_passphrase=True, argon2=ARGON2
                    ),
                },
                failed("passphrase_required", "This secret needs its passphrase."),
            ],
        ),
        transcript(
            "gone",
            "404 at the challenge",
            [
                {"client": challenge_request(), "then": error(404, "not_found")},
                failed("gone", GONE),
            ],
        ),
        transcript(
            "gone at reveal",
            "burned between ticket and reveal",
            [
                *up_to_reveal(),
                {"client": REVEAL_REQUEST, "then": error(404, "not_found")},
                failed("gone", GONE),
            ],
        ),
        transcript(
            "refused",
            "403 at the reveal: a used or expired ticket",
            [
                *up_to_reveal(),
                {"client": REVEAL_REQUEST, "then": error(403, "refused")},
                failed("refused", REVEAL_REFUSED),
            ],
        ),
        transcript(
            "expired challenge",
            "403 at the ticket: the challenge expired meanwhile",
            [
                {"client": challenge_request(), "then": challenge_answer()},
                *solving(),
                {"client": ticket_request(), "then": error(403, "refused")},
                failed("refused", TICKET_REFUSED),
            ],
        ),
        transcript(
            "rate-limited, then through",
            "429 + Retry-After is waited out, then again",
            [
                {"client": challenge_request(), "then": error(429, "rate_limited", "5")},
                {"client": {"wait": {"seconds": 5}}, "then": {"waited": {}}},
                {"client": challenge_request(), "then": challenge_answer(CHALLENGE_2)},
                *solving(CHALLENGE_2),
                {"client": ticket_request(CHALLENGE_2), "then": TICKET_ANSWER},
                {"client": REVEAL_REQUEST, "then": {"answer": {"status": 200}}},
                REVEALED,
            ],
        ),
        transcript(
            "rate-limited at reveal",
            "a 429 at any step starts again from the challenge",
            [
                *up_to_reveal(),
                {"client": REVEAL_REQUEST, "then": error(429, "rate_limited", "2")},
                {"client": {"wait": {"seconds": 2}}, "then": {"waited": {}}},
                {"client": challenge_request(), "then": error(404, "not_found")},
                failed("gone", GONE),
            ],
        ),
        transcript(
            "rate-limited, out of retries",
            "after rate_limit_retries waits it gives up",
            [
                {"client": challenge_request(), "then": error(429, "rate_limited", "1")},
                {"client": {"wait": {"seconds": 1}}, "then": {"waited": {}}},
                {"client": challenge_request(), "then": error(429, "rate_limited", "2")},
                failed(
                    "rate_limited",
                    "The server is limiting requests; try again in 2 seconds.",
                    retry_after=2,
                ),
            ],
            rate_limit_retries=1,
        ),
        transcript(
            "rate-limited too long",
            "a Retry-After past max_retry_wait is not waited",
            [
                {"client": challenge_request(), "then": error(429, "rate_limited", "61")},
                failed(
                    "rate_limited",
                    "The server is limiting requests; try again in 61 seconds.",
                    retry_after=61,
                ),
            ],
        ),
        transcript(
            "too much work",
            "more bits than the client will solve: stop before work",
            [
                {"client": challenge_request(), "then": challenge_answer(bits=27)},
                failed(
                    "refused", "The server demands more proof of work than this client will do."
                ),
            ],
        ),
        transcript(
            "one shot",
            "the ticket step with reveal: true answers the envelope (access.md, 'One shot')",
            [
                {"client": challenge_request(), "then": keyed()},
                access_proving(),
                *solving(),
                {
                    "client": ticket_request(access_proof=ACCESS_PROOF, reveal=True),
                    "then": {"answer": {"status": 200}},
                },
                REVEALED,
            ],
            one_shot=True,
        ),
        transcript(
            "one shot, wrong key",
            "refused at the ticket step with reveal, like the two-step path: nothing spent",
            [
                {"client": challenge_request(), "then": keyed()},
                access_proving(),
                *solving(),
                {
                    "client": ticket_request(access_proof=ACCESS_PROOF, reveal=True),
                    "then": error(403, "wrong_key"),
                },
                failed("wrong_key", WRONG_KEY),
            ],
            one_shot=True,
        ),
        transcript(
            "one shot, older server",
            "a 422 to reveal: true: the same ticket request without it, then the reveal step",
            [
                {"client": challenge_request(), "then": keyed()},
                access_proving(),
                *solving(),
                {
                    "client": ticket_request(access_proof=ACCESS_PROOF, reveal=True),
                    "then": error(422, "invalid"),
                },
                {"client": ticket_request(access_proof=ACCESS_PROOF), "then": TICKET_ANSWER},
                {"client": REVEAL_REQUEST, "then": {"answer": {"status": 200}}},
                REVEALED,
            ],
            one_shot=True,
        ),
        transcript(
            "one shot, server ignored reveal",
            "a ticket (JSON) in answer to reveal: true: the reveal step, as without one shot",
            [
                {"client": challenge_request(), "then": keyed()},
                access_proving(),
                *solving(),
                {
                    "client": ticket_request(access_proof=ACCESS_PROOF, reveal=True),
                    "then": TICKET_ANSWER,
                },
                {"client": REVEAL_REQUEST, "then": {"answer": {"status": 200}}},
                REVEALED,
            ],
            one_shot=True,
        ),
        transcript(
            "one shot, unreadable answer",
            "a JSON answer to reveal: true that is no ticket: nothing the client understands",
            [
                {"client": challenge_request(), "then": keyed()},
                access_proving(),
                *solving(),
                {
                    "client": ticket_request(access_proof=ACCESS_PROOF, reveal=True),
                    "then": {"answer": {"status": 200, "json": {"envelope": "no"}}},
                },
                failed(
                    "network", f"The server at {SERVER} sent an answer Atopos does not understand."
                ),
            ],
            one_shot=True,
        ),
        transcript(
            "reveal answered with JSON",
            "a reveal answer the driver read as JSON is not an envelope",
            [
                *up_to_reveal(),
                {"client": REVEAL_REQUEST, "then": {"answer": {"status": 200, "json": {}}}},
                failed(
                    "network", f"The server at {SERVER} sent an answer Atopos does not understand."
                ),
            ],
        ),
        transcript(
            "unreadable challenge",
            "an answer of the wrong shape",
            [
                {"client": challenge_request(), "then": {"answer": {"status": 200, "body": "[]"}}},
                failed(
                    "network", f"The server at {SERVER} sent an answer Atopos does not understand."
                ),
            ],
        ),
    ]


def document() -> str:
    data = {"format": FORMAT, "transcripts": [*transcripts(), *stamp_transcripts()]}
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def main() -> int:
    text = document()
    if "--check" in sys.argv[1:]:
        return 0 if PATH.read_text(encoding="utf-8") == text else 1
    PATH.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
