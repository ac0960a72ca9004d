"""The shared envelope test vectors (tests/vectors/) against the browser's envelope module,
loaded from the running server into a page, as the pages load it.

Positive vectors: sealing with the vector's random bytes injected gives the envelope byte
for byte, and opening it (whole and one byte at a time) gives back metadata and content.
Negative vectors: opening fails with the named error, whole and one byte at a time.
Both run at Tor Browser's "standard" and "safer" levels (tests/browser/conftest.py): the
passphrase vectors pin the WebAssembly Argon2id (hash-wasm) and the plain JavaScript fallback
(@noble/hashes) to the same bytes, and the test checks which engine ran.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.conftest import SECURITY_LEVELS, security_level
from tests.browser.harness import open_vector_page
from tests.servers import ServerProcess

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
POSITIVE: list[dict[str, Any]] = json.loads((VECTORS / "envelope.json").read_text())
NEGATIVE: list[dict[str, Any]] = json.loads((VECTORS / "envelope_invalid.json").read_text())

_HELPERS = """
window.vectorTools = {
  hex: (text) => Uint8Array.from(text.match(/../g) ?? [], (byte) => parseInt(byte, 16)),
  toHex: (bytes) => Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join(""),
  concat: (pieces) => {
    const out = new Uint8Array(pieces.reduce((total, piece) => total + piece.length, 0));
    let offset = 0;
    for (const piece of pieces) { out.set(piece, offset); offset += piece.length; }
    return out;
  },
};
"""

_SEAL_AND_OPEN = """
async (vector) => {
  const envelope = await import("/static/js/envelope.js");
  const kdf = await import("/static/js/kdf.js");
  const { hex, toHex, concat } = window.vectorTools;
  const engines = new Set();
  const listen = ({ detail }) => engines.add(detail.engine);
  kdf.passphraseProgress.addEventListener("passphrase-progress", listen);
  const random = hex(vector.random);
  let drawn = 0;
  const randomBytes = (size) => random.slice(drawn, (drawn += size));
  const argon2 = vector.argon2 && {
    memoryKib: vector.argon2.memory_kib,
    iterations: vector.argon2.iterations,
    lanes: vector.argon2.lanes,
  };
  const options = {
    randomBytes,
    passphrase: vector.passphrase,
    chunkSizeLog2: vector.chunk_size_log2,
  };
  if (argon2) options.argon2 = argon2;
  const linkKey = hex(vector.link_key);
  const sealed = await envelope.seal(hex(vector.content), vector.metadata, linkKey, options);

  const whole = await envelope.openEnvelope(hex(vector.envelope), hex(vector.link_key), {
    passphrase: vector.passphrase,
  });
  const opener = new envelope.Opener(hex(vector.link_key), { passphrase: vector.passphrase });
  const bytes = hex(vector.envelope);
  const pieces = [];
  for (let i = 0; i < bytes.length; i++) {
    pieces.push(...(await opener.feed(bytes.subarray(i, i + 1))));
  }
  pieces.push(...(await opener.finish()));

  const salt = random.slice(0, 32);
  let passphraseKey = null;
  if (vector.passphrase !== null) {
    passphraseKey = await kdf.derivePassphraseKey(vector.passphrase, random.slice(32, 48), argon2);
  }
  const keys = await kdf.deriveEnvelopeKeys(hex(vector.link_key), salt, passphraseKey);
  kdf.passphraseProgress.removeEventListener("passphrase-progress", listen);
  return {
    engines: [...engines],
    hasWebAssembly: typeof WebAssembly !== "undefined",
    envelope: toHex(sealed),
    sealedSize: envelope.sealedSize(vector.metadata, {
      hasPassphrase: vector.passphrase !== null,
      chunkSizeLog2: vector.chunk_size_log2,
    }),
    opened: { metadata: whole.metadata, content: toHex(whole.content) },
    openedByteByByte: { metadata: opener.metadata, content: toHex(concat(pieces)) },
    passphraseKey: passphraseKey && toHex(passphraseKey),
    noncePrefix: toHex(keys.noncePrefix),
  };
}
"""

_OPEN_INVALID = """
async (vector) => {
  const envelope = await import("/static/js/envelope.js");
  const { hex } = window.vectorTools;
  const failure = async (feedBytes) => {
    try {
      const opener = new envelope.Opener(hex(vector.link_key), { passphrase: vector.passphrase });
      await feedBytes(opener, hex(vector.envelope));
      await opener.finish();
      return "no error";
    } catch (error) {
      return error.name;
    }
  };
  return {
    whole: await failure((opener, bytes) => opener.feed(bytes)),
    byteByByte: await failure(async (opener, bytes) => {
      for (let i = 0; i < bytes.length; i++) await opener.feed(bytes.subarray(i, i + 1));
    }),
  };
}
"""


@pytest.fixture(scope="module")
def vector_page(browser: Browser, web_server: ServerProcess) -> Iterator[Page]:
    """One page of the running server, kept for the whole module (the vectors are many)."""
    with open_vector_page(browser, web_server.url, _HELPERS) as page:
        yield page


@pytest.mark.parametrize("browser", SECURITY_LEVELS, indirect=True)
@pytest.mark.parametrize("vector", POSITIVE, ids=[vector["name"] for vector in POSITIVE])
def test_positive_vector(
    request: pytest.FixtureRequest, vector_page: Page, vector: dict[str, Any]
) -> None:
    result = vector_page.evaluate(_SEAL_AND_OPEN, vector)
    is_safer = security_level(request) == "safer"
    assert result["hasWebAssembly"] is not is_safer
    if vector["passphrase"] is not None:
        assert result["engines"] == ["plain" if is_safer else "wasm"]
    assert result["envelope"] == vector["envelope"]
    assert result["sealedSize"] == len(vector["envelope"]) // 2
    for opened in (result["opened"], result["openedByteByByte"]):
        assert opened["metadata"] == vector["metadata"]
        assert opened["content"] == vector["content"]
    assert result["passphraseKey"] == vector["passphrase_key"]
    assert result["noncePrefix"] == vector["nonce_prefix"]


@pytest.mark.parametrize("browser", SECURITY_LEVELS, indirect=True)
@pytest.mark.parametrize("vector", NEGATIVE, ids=[vector["name"] for vector in NEGATIVE])
def test_negative_vector(vector_page: Page, vector: dict[str, Any]) -> None:
    result = vector_page.evaluate(_OPEN_INVALID, vector)
    assert result == {"whole": vector["error"], "byteByByte": vector["error"]}, vector["reason"]


def test_vectors_cover_what_the_spec_lists() -> None:
    names = {vector["name"] for vector in POSITIVE}
    assert {"text", "text-passphrase-argon2id", "multi-chunk", "empty"} <= names
    assert len(NEGATIVE) >= 50
