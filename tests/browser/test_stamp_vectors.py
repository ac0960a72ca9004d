"""The stamp vectors (tests/vectors/stamps.json, docs/protocol/access.md "Stamp: a reveal in
one request") against the browser's modules, loaded from the running server as the reveal
page loads them: the walk machine (access-path.js) spells each valid stamp from its id, time
(rounded down to the minute, as clients send it) and salt exactly, and asks for its proof
under the stamp label; the access proof over it (access-proof.js) is the vector's message
and (deterministic Ed25519) signature for the all-zero link key, and the signature under
the challenge label is another one; and pow-worker.js finds the
vector's smallest nonce at its bits. tests/unit/test_stamp_vectors.py runs the Python side.
The browser never parses a stamp (the server does), so the invalid spellings are the
Python test's alone; the machine refuses a salt or time it could not spell."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.harness import open_vector_page
from tests.servers import ServerProcess

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
DATA: dict[str, Any] = json.loads((VECTORS / "stamps.json").read_text(encoding="utf-8"))

_STAMP = """
async ({ vector, linkKeyHex }) => {
  const { AccessPath } = await import("/static/js/access-path.js");
  const proof = await import("/static/js/access-proof.js");
  const { decode, encode } = await import("/static/js/base64url.js");
  const fromHex = (hex) => new Uint8Array(hex.match(/../g).map((b) => parseInt(b, 16)));
  const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  const secretId = encode(fromHex(vector.secret_id));
  const path = new AccessPath(secretId, { server: "x", canUnlock: false, maxPowBits: 26 });
  const first = path.start();
  const asked = path.receive({ stamp: { time: vector.t, salt: encode(fromHex(vector.salt)) } });
  const stamp = vector.stamp;
  const key = await proof.accessKeyOf(fromHex(linkKeyHex));
  return {
    first,
    asked,
    message: toHex(proof.stampProofMessage(decode(secretId), stamp)),
    access_proof: encode(await key.signStampProof(decode(secretId), stamp)),
    challenge_label_proof: encode(await key.signProof(decode(secretId), stamp)),
    access_key: encode(key.publicKey),
  };
}
"""

_SMALLEST = """
({ challenge, bits }) => new Promise((resolve, reject) => {
  const worker = new Worker("/static/js/pow-worker.js");
  worker.onmessage = ({ data }) => {
    if (data.error !== undefined) reject(new Error(data.error));
    else if (data.nonce !== undefined) resolve(data.nonce);
    else return;
    worker.terminate();
  };
  worker.onerror = () => { worker.terminate(); reject(new Error("the worker failed")); };
  worker.postMessage({ challenge, bits, start: 0, stride: 1 });
})
"""

_REFUSED = """
async ({ time, salt }) => {
  const { AccessPath } = await import("/static/js/access-path.js");
  const path = new AccessPath("AAECAwQFBgcICQoLDA0ODw", {
    server: "x", canUnlock: false, maxPowBits: 26,
  });
  path.start();
  try {
    path.receive({ stamp: { time, salt } });
    return null;
  } catch (error) {
    return error.name;
  }
}
"""


@pytest.fixture(scope="module")
def vector_page(browser: Browser, web_server: ServerProcess) -> Iterator[Page]:
    with open_vector_page(browser, web_server.url, "() => {}") as page:
        yield page


@pytest.mark.parametrize("vector", DATA["valid"], ids=lambda v: v["name"])
def test_the_browser_spells_signs_and_solves_the_vectors_stamp(
    vector_page: Page, vector: dict[str, Any]
) -> None:
    made = vector_page.evaluate(
        _STAMP, {"vector": vector, "linkKeyHex": DATA["access_key"]["link_key"]}
    )
    secret_id, _, salt = vector["stamp"].split(".")[1:]
    # The machine rounds the clock down to the minute (a vector's t may be any second).
    spelled = f"s1.{secret_id}.{vector['t'] - vector['t'] % 60}.{salt}"
    assert (spelled == vector["stamp"]) is (vector["t"] % 60 == 0)
    assert made == {
        "first": {"stamp": {}},
        "asked": {"stamp_proof": {"secret_id": secret_id, "stamp": spelled}},
        "message": vector["access_proof_message"],
        "access_proof": vector["access_proof"],
        "challenge_label_proof": vector["challenge_label_proof"],
        "access_key": DATA["access_key"]["access_key"],
    }
    smallest = vector_page.evaluate(_SMALLEST, {"challenge": vector["stamp"], "bits": DATA["bits"]})
    assert smallest == vector["first_nonce"]


@pytest.mark.parametrize(
    ("time", "salt"),
    [
        (-1, "EBESExQVFhcYGRobHB0eHw"),  # before the epoch
        (10**12, "EBESExQVFhcYGRobHB0eHw"),  # 13 digits
        (1.5, "EBESExQVFhcYGRobHB0eHw"),  # not whole seconds
        (1_800_000_000, "EBESExQVFhcYGRobHB0eHx"),  # non-canonical base64url
        (1_800_000_000, "EBESExQVFhcYGRobHB0e"),  # 15 bytes
        (1_800_000_000, "EBESExQVFhcYGRobHB0eHw=="),  # padded
    ],
)
def test_the_machine_refuses_a_time_or_salt_it_could_not_spell(
    vector_page: Page, time: float, salt: str
) -> None:
    assert vector_page.evaluate(_REFUSED, {"time": time, "salt": salt}) == "AccessPathMisuse"
