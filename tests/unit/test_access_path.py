"""The access-path machine (protocol/access_path.py) against every transcript of
tests/vectors/access_path.json; the browser twin runs the same file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from atopos.crypto import pow as proof_of_work
from atopos.crypto.base64url import b64url_decode
from atopos.protocol.access_path import (
    TRANSITIONS,
    AccessPath,
    AccessPathMisuse,
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
    State,
    Step,
    Wait,
    Waited,
)
from atopos.protocol.answers import ServerAnswer

VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors" / "access_path.json").read_text(encoding="utf-8")
)
TRANSCRIPTS = VECTORS["transcripts"]


def as_vector(step: Step) -> dict[str, Any]:
    """A step in the vector file's words."""
    if isinstance(step, SendRequest):
        request: dict[str, Any] = {"method": step.method, "path": step.path, "json": step.json}
        if step.is_reveal:
            request["is_reveal"] = True
        return {"request": request}
    if isinstance(step, MakeStamp):
        return {"stamp": {}}
    if isinstance(step, MakeStampProof):
        return {"stamp_proof": {"secret_id": step.secret_id, "stamp": step.stamp}}
    if isinstance(step, MakeAccessProof):
        argon2 = None if step.argon2 is None else dataclasses.asdict(step.argon2)
        asked = {"secret_id": step.secret_id, "challenge": step.challenge, "argon2": argon2}
        return {"access_proof": asked}
    if isinstance(step, MakeDeviceProof):
        return {"device_proof": {"secret_id": step.secret_id, "challenge": step.challenge}}
    if isinstance(step, SolveProofOfWork):
        return {"proof_of_work": {"challenge": step.challenge.decode(), "bits": step.bits}}
    if isinstance(step, Wait):
        return {"wait": {"seconds": step.seconds}}
    if isinstance(step, Revealed):
        return {"revealed": {}}
    failure = step.failure
    failed: dict[str, Any] = {"error": failure.kind.value, "message": failure.message}
    if failure.retry_after is not None:
        failed["retry_after"] = failure.retry_after
    return {"failed": failed}


def as_event(then: dict[str, Any], asked: Step) -> Event:
    """The event a vector's `then` stands for, checked against what was asked."""
    (kind, value), *_ = then.items()
    if kind == "answer":
        body = json.dumps(value["json"]).encode() if "json" in value else None
        if "body" in value:
            body = value["body"].encode()
        # Neither json nor body: the driver did not read it (the envelope, streamed).
        answer = ServerAnswer(value["status"], body)
        if "retry_after" in value:
            answer = ServerAnswer(answer.status, answer.body, value["retry_after"])
        return ServerAnswered(answer)
    if kind == "stamp":
        assert isinstance(asked, MakeStamp)
        return StampMade(value["time"], b64url_decode(value["salt"]))
    if kind == "access_proof":
        assert isinstance(asked, MakeAccessProof | MakeStampProof)
        return AccessProofMade(b64url_decode(value["proof"]))
    if kind == "device_proof":
        proof = value["proof"]
        return DeviceProofMade(None if proof is None else b64url_decode(proof))
    if kind == "nonce":
        assert isinstance(asked, SolveProofOfWork)
        assert proof_of_work.verify(asked.challenge, value, asked.bits)
        return ProofOfWorkFound(value)
    assert kind == "waited"
    return Waited()


@pytest.mark.parametrize("transcript", TRANSCRIPTS, ids=[t["name"] for t in TRANSCRIPTS])
def test_the_machine_follows_the_transcript(transcript: dict[str, Any]) -> None:
    path = AccessPath(transcript["secret_id"], server=transcript["server"], **transcript["options"])
    step = path.start()
    for position, expected in enumerate(transcript["steps"]):
        assert as_vector(step) == expected["client"], f"step {position}"
        if "then" not in expected:
            assert isinstance(step, Revealed | Failed)
            assert position == len(transcript["steps"]) - 1
            return
        step = path.receive(as_event(expected["then"], step))
    raise AssertionError("the transcript has no terminal step")


def test_the_transcripts_cover_the_briefed_cases() -> None:
    outcomes = {t["name"]: t["steps"][-1]["client"] for t in TRANSCRIPTS}
    assert outcomes["success"] == {"revealed": {}}
    assert outcomes["gone"]["failed"]["error"] == "gone"
    assert outcomes["refused"]["failed"]["error"] == "refused"
    assert outcomes["expired challenge"]["failed"]["error"] == "refused"
    assert outcomes["passphrase secret, none at hand"]["failed"]["error"] == "passphrase_required"
    assert outcomes["keyed secret"] == {"revealed": {}}
    assert outcomes["keyed secret, wrong key"]["failed"]["error"] == "wrong_key"
    names = {t["name"]: t for t in TRANSCRIPTS}
    assert any("wait" in s["client"] for s in names["rate-limited, then through"]["steps"])


def test_an_event_with_no_move_is_a_driver_bug() -> None:
    path = AccessPath(
        "AAECAwQFBgcICQoLDA0ODw", server="https://x", can_unlock=False, max_pow_bits=8
    )
    path.start()
    with pytest.raises(AccessPathMisuse):
        path.receive(ProofOfWorkFound(0))
    with pytest.raises(AccessPathMisuse):
        path.receive(Waited())
    assert path.state is State.AWAITING_CHALLENGE


def test_every_state_but_the_terminal_ones_has_a_move() -> None:
    moving = {state for state, _, _ in TRANSITIONS}
    assert moving == set(State) - {State.REVEALED, State.FAILED}
    assert set(TRANSITIONS.values()) == set(State)


def test_the_transcripts_cover_the_stamp_cases() -> None:
    names = {t["name"]: t for t in TRANSCRIPTS}
    outcomes = {name: t["steps"][-1]["client"] for name, t in names.items()}
    assert outcomes["stamp"] == {"revealed": {}}
    assert len([s for s in names["stamp"]["steps"] if "request" in s["client"]]) == 1
    for reason in ("passphrase", "bound", "clock", "bits"):
        steps = names[f"stamp refused: {reason}"]["steps"]
        assert outcomes[f"stamp refused: {reason}"] == {"revealed": {}}
        assert any(
            "stamp_refused" in s.get("then", {}).get("answer", {}).get("json", {}) for s in steps
        )
    assert outcomes["stamp, older server"] == {"revealed": {}}
    assert outcomes["stamp, wrong key"]["failed"]["error"] == "wrong_key"
    assert outcomes["stamp, gone"]["failed"]["error"] == "gone"
    assert outcomes["stamp, too large"]["failed"]["error"] == "too_large"
    assert any("wait" in s["client"] for s in names["stamp, rate-limited"]["steps"])


def test_a_stamp_is_made_of_the_time_and_salt_the_driver_hands_in() -> None:
    path = AccessPath(
        "AAECAwQFBgcICQoLDA0ODw", server="https://x", can_unlock=False, max_pow_bits=16
    )
    assert isinstance(path.start(), MakeStamp)
    with pytest.raises(AccessPathMisuse):
        path.receive(StampMade(1_900_000_000, bytes(15)))
    with pytest.raises(AccessPathMisuse):
        path.receive(StampMade(-1, bytes(16)))
    step = path.receive(StampMade(0, bytes(16)))
    # Signed under the stamp's own label (a MakeStampProof), never as a challenge.
    assert step == MakeStampProof(
        "AAECAwQFBgcICQoLDA0ODw", "s1.AAECAwQFBgcICQoLDA0ODw.0.AAAAAAAAAAAAAAAAAAAAAA"
    )
    assert path.state is State.MAKING_STAMP_PROOF


@pytest.mark.parametrize(
    ("now", "t"),
    [(0, 0), (59, 0), (60, 60), (1_900_000_000, 1_899_999_960), (10**12 - 1, 10**12 - 40)],
)
def test_a_stamp_time_is_the_clock_rounded_down_to_the_minute(now: int, t: int) -> None:
    path = AccessPath(
        "AAECAwQFBgcICQoLDA0ODw", server="https://x", can_unlock=False, max_pow_bits=16
    )
    path.start()
    step = path.receive(StampMade(now, bytes(16)))
    assert isinstance(step, MakeStampProof)
    assert step.stamp == f"s1.AAECAwQFBgcICQoLDA0ODw.{t}.AAAAAAAAAAAAAAAAAAAAAA"


def test_the_transcripts_pin_what_is_no_challenge() -> None:
    outcomes = {t["name"]: t["steps"][-1]["client"] for t in TRANSCRIPTS}
    for name in (
        "challenge a stamp",
        "stamp refused, the challenge a stamp",
        "challenge not base64url",
        "challenge with negative bits",
    ):
        assert outcomes[name]["failed"]["error"] == "network", name
        assert "does not understand" in outcomes[name]["failed"]["message"], name
    # Nothing was signed or solved over the stamp handed out as a challenge.
    names = {t["name"]: t for t in TRANSCRIPTS}
    steps = names["stamp refused, the challenge a stamp"]["steps"]
    asked = [s["client"] for s in steps]
    assert [a for a in asked if "access_proof" in a or "proof_of_work" in a][-1] == {
        "proof_of_work": {"challenge": steps[1]["client"]["stamp_proof"]["stamp"], "bits": 6}
    }


def _answered_with_a_challenge(answer: dict[str, object]) -> tuple[AccessPath, Step]:
    """A walk without stamps whose challenge request was answered `answer` (as JSON)."""
    path = AccessPath(
        "AAECAwQFBgcICQoLDA0ODw",
        server="https://x",
        can_unlock=False,
        max_pow_bits=26,
        stamp=False,
    )
    path.start()
    return path, path.receive(ServerAnswered(ServerAnswer(200, json.dumps(answer).encode())))


@pytest.mark.parametrize(
    "challenge",
    ["s1.AAECAwQFBgcICQoLDA0ODw.1900086360.EBESExQVFhcYGRobHB0eHw", "a.b", "a b", "", "é", "a\n"],
)
def test_a_challenge_that_is_not_base64url_is_not_understood(challenge: str) -> None:
    path, step = _answered_with_a_challenge(
        {"challenge": challenge, "bits": 6, "expires_at": 1, "has_access_key": True}
    )
    assert isinstance(step, Failed)
    assert "does not understand" in step.failure.message
    assert path.challenge is None


@pytest.mark.parametrize("bits", [-1, -64])
def test_negative_bits_are_not_understood(bits: int) -> None:
    path, step = _answered_with_a_challenge({"challenge": "abc", "bits": bits, "expires_at": 1})
    assert isinstance(step, Failed)
    assert "does not understand" in step.failure.message
    assert path.challenge is None


def test_without_one_shot_there_is_no_stamp() -> None:
    path = AccessPath(
        "AAECAwQFBgcICQoLDA0ODw",
        server="https://x",
        can_unlock=False,
        max_pow_bits=26,
        one_shot=False,
    )
    assert isinstance(path.start(), SendRequest)
    assert path.state is State.AWAITING_CHALLENGE
