"""The browser twin of the access-path machine (web/js/access-path.js) against every
transcript of tests/vectors/access_path.json, loaded from the running server into a page as
the reveal page loads it; tests/unit/test_access_path.py runs the same file against the
Python machine (protocol/access_path.py). When both are present, the two transition tables
are compared too.

A failed step is compared by its kind (and `retry_after`): the vector file lets a twin word
its own sentence. Every other step must match the transcript exactly.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from atopos.crypto import pow as proof_of_work
from tests.browser.harness import open_vector_page
from tests.servers import ServerProcess

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
TRANSCRIPTS: list[dict[str, Any]] = json.loads(
    (VECTORS / "access_path.json").read_text(encoding="utf-8")
)["transcripts"]

_REPLAY = """
async (transcript) => {
  const { AccessPath } = await import("/static/js/access-path.js");
  const options = transcript.options;
  const path = new AccessPath(transcript.secret_id, {
    server: transcript.server,
    canUnlock: options.can_unlock,
    maxPowBits: options.max_pow_bits,
    rateLimitRetries: options.rate_limit_retries,
    maxRetryWait: options.max_retry_wait,
    oneShot: options.one_shot ?? true,
    stamp: options.stamp ?? true,
    assumedBits: options.assumed_bits ?? 16,
    maxAnswerBytes: options.max_answer_bytes ?? null,
  });
  const event = (then) => {
    const [kind, value] = Object.entries(then)[0];
    if (kind !== "answer") return { [kind]: value };
    let body = null;
    if ("json" in value) body = JSON.stringify(value.json);
    if ("body" in value) body = value.body;
    return { answer: { status: value.status, body, retry_after: value.retry_after ?? null } };
  };
  const steps = [];
  let step = path.start();
  for (const expected of transcript.steps) {
    steps.push(step);
    if (expected.then === undefined) break;
    step = path.receive(event(expected.then));
  }
  return { steps, state: path.state };
}
"""

_TABLE = """
async () => {
  const { TRANSITIONS } = await import("/static/js/access-path.js");
  return TRANSITIONS;
}
"""

_EVENT_NAMES = {
    "ServerAnswered": "answer",
    "StampMade": "stamp",
    "AccessProofMade": "access_proof",
    "DeviceProofMade": "device_proof",
    "ProofOfWorkFound": "nonce",
    "Waited": "waited",
}


@pytest.fixture(scope="module")
def vector_page(browser: Browser, web_server: ServerProcess) -> Iterator[Page]:
    with open_vector_page(browser, web_server.url, "() => {}") as page:
        yield page


def _comparable(client: dict[str, Any]) -> dict[str, Any]:
    """A step with a failure's sentence left out (a twin words its own)."""
    if "failed" not in client:
        return client
    return {"failed": {k: v for k, v in client["failed"].items() if k != "message"}}


@pytest.mark.parametrize("transcript", TRANSCRIPTS, ids=[t["name"] for t in TRANSCRIPTS])
def test_js_machine_follows_the_transcript(vector_page: Page, transcript: dict[str, Any]) -> None:
    replayed = vector_page.evaluate(_REPLAY, transcript)
    steps = replayed["steps"]
    assert len(steps) == len(transcript["steps"])
    for position, (step, expected) in enumerate(zip(steps, transcript["steps"], strict=True)):
        assert _comparable(step) == _comparable(expected["client"]), f"step {position}"
        if "nonce" in expected.get("then", {}):
            asked = step["proof_of_work"]
            nonce = expected["then"]["nonce"]
            assert proof_of_work.verify(asked["challenge"].encode(), nonce, asked["bits"])
    last = transcript["steps"][-1]["client"]
    assert replayed["state"] == ("revealed" if "revealed" in last else "failed")


def test_js_and_python_tables_are_the_same(vector_page: Page) -> None:
    try:
        machine = importlib.import_module("atopos.protocol.access_path")
    except ImportError:
        pytest.skip("protocol/access_path.py comes with the s16-client branch")
    python_table = {
        (state.value, _EVENT_NAMES[event.__name__], guard.value, target.value)
        for (state, event, guard), target in machine.TRANSITIONS.items()
    }
    js_table = {tuple(move) for move in vector_page.evaluate(_TABLE)}
    assert js_table == python_table


def test_the_transcripts_reach_every_terminal_step() -> None:
    last = [t["steps"][-1]["client"] for t in TRANSCRIPTS]
    assert {"revealed": {}} in last
    assert {step["failed"]["error"] for step in last if "failed" in step} >= {
        "gone",
        "refused",
        "rate_limited",
        "passphrase_required",
        "network",
    }
