"""The key-knowledge proof vectors (tests/vectors/access_proof.json) against the browser's
module (js/access-proof.js), loaded from the running server as the pages load it: the same
access key, message and (deterministic Ed25519) proof as the Python side, and another key
for a typo in the link or the passphrase."""

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
DATA: dict[str, Any] = json.loads((VECTORS / "access_proof.json").read_text(encoding="utf-8"))

_DERIVE = """
async ({ vector, linkKey, passphrase }) => {
  const proof = await import("/static/js/access-proof.js");
  const { decode, encode } = await import("/static/js/base64url.js");
  const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  const argon2 = vector.argon2 === null ? null : {
    memoryKib: vector.argon2.memory_kib,
    iterations: vector.argon2.iterations,
    lanes: vector.argon2.lanes,
    salt: decode(vector.argon2.salt),
  };
  const key = await proof.accessKey(decode(linkKey), { passphrase, argon2 });
  const secretId = decode(vector.secret_id);
  return {
    access_key: encode(key.publicKey),
    message: toHex(proof.accessProofMessage(secretId, vector.challenge)),
    access_proof: encode(await key.signProof(secretId, vector.challenge)),
  };
}
"""


@pytest.fixture(scope="module")
def vector_page(browser: Browser, web_server: ServerProcess) -> Iterator[Page]:
    with open_vector_page(browser, web_server.url, "() => {}") as page:
        yield page


@pytest.mark.parametrize("vector", DATA["valid"], ids=lambda v: v["name"])
def test_the_browser_makes_the_vectors_key_and_proof(
    vector_page: Page, vector: dict[str, Any]
) -> None:
    made = vector_page.evaluate(
        _DERIVE,
        {"vector": vector, "linkKey": vector["link_key"], "passphrase": vector["passphrase"]},
    )
    assert made == {
        "access_key": vector["access_key"],
        "message": vector["message"],
        "access_proof": vector["access_proof"],
    }


@pytest.mark.parametrize("vector", DATA["valid"], ids=lambda v: v["name"])
def test_a_typo_gives_the_browser_another_key(vector_page: Page, vector: dict[str, Any]) -> None:
    typos = [(vector["wrong_link_key"]["link_key"], vector["passphrase"], "wrong_link_key")]
    if "wrong_passphrase" in vector:
        typos.append(
            (vector["link_key"], vector["wrong_passphrase"]["passphrase"], "wrong_passphrase")
        )
    for link_key, passphrase, name in typos:
        made = vector_page.evaluate(
            _DERIVE, {"vector": vector, "linkKey": link_key, "passphrase": passphrase}
        )
        assert made["access_key"] == vector[name]["access_key"] != vector["access_key"]
        assert made["access_proof"] != vector["access_proof"]
