"""The device test vectors (tests/vectors/device.json, envelope_device.json,
envelope_device_invalid.json) against the browser's modules (js/device.js, js/envelope.js),
loaded from the running server into a page, as the pages load them.

Raw private keys from the vectors are imported through PKCS #8 (WebCrypto has no raw import
for private X25519/Ed25519 keys); a real browser device never has raw private bytes.
"""

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
DEVICE: dict[str, Any] = json.loads((VECTORS / "device.json").read_text())
POSITIVE: list[dict[str, Any]] = json.loads((VECTORS / "envelope_device.json").read_text())
NEGATIVE: list[dict[str, Any]] = json.loads((VECTORS / "envelope_device_invalid.json").read_text())
DEVICES = {device["name"]: device for device in DEVICE["devices"]}

_HELPERS = """
window.vectorTools = {
  hex: (text) => Uint8Array.from(text.match(/../g) ?? [], (byte) => parseInt(byte, 16)),
  toHex: (bytes) => Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join(""),
  // A device over the vector's X25519 private key, imported NON-extractable like a real one.
  device: async (vector) => {
    if (vector === null) return null;
    const { deviceFromKeys } = await import("/static/js/device.js");
    const { hex } = window.vectorTools;
    const privateKey = await crypto.subtle.importKey(
      "pkcs8", hex(vector.x25519_private_pkcs8), { name: "X25519" }, false, ["deriveBits"]);
    return deviceFromKeys({
      sealing: { privateKey },
      sealingPublic: hex(vector.x25519_public),
      signingPublic: hex(vector.ed25519_public),
      code: vector.device_code,
    });
  },
};
"""

_SEAL_AND_OPEN = """
async (vector) => {
  const envelope = await import("/static/js/envelope.js");
  const { hex, toHex, device } = window.vectorTools;
  const random = hex(vector.random);
  let drawn = 0;
  const randomBytes = (size) => random.slice(drawn, (drawn += size));
  const options = {
    randomBytes,
    passphrase: vector.passphrase,
    chunkSizeLog2: vector.chunk_size_log2,
    device: { sealingKey: hex(vector.device.x25519_public) },
  };
  if (vector.argon2) {
    options.argon2 = {
      memoryKib: vector.argon2.memory_kib,
      iterations: vector.argon2.iterations,
      lanes: vector.argon2.lanes,
    };
  }
  const sealed = await envelope.seal(hex(vector.content), vector.metadata, hex(vector.link_key),
                                     options);
  const opened = async (pieceSize) => {
    const opener = new envelope.Opener(hex(vector.link_key), {
      passphrase: vector.passphrase, device: await device(vector.device),
    });
    const bytes = hex(vector.envelope);
    const pieces = [];
    for (let i = 0; i < bytes.length; i += pieceSize) {
      pieces.push(...(await opener.feed(bytes.subarray(i, i + pieceSize))));
    }
    pieces.push(...(await opener.finish()));
    const content = new Uint8Array(pieces.reduce((n, piece) => n + piece.length, 0));
    let offset = 0;
    for (const piece of pieces) { content.set(piece, offset); offset += piece.length; }
    return { metadata: opener.metadata, content: toHex(content),
             header: toHex(opener.header.raw), sealAad: toHex(opener.header.sealAad) };
  };
  const unsealer = await device(vector.device);
  return {
    envelope: toHex(sealed),
    sealedSize: envelope.sealedSize(vector.metadata, {
      hasPassphrase: vector.passphrase !== null,
      isDeviceBound: true,
      chunkSizeLog2: vector.chunk_size_log2,
    }),
    whole: await opened(hex(vector.envelope).length),
    byteByByte: await opened(1),
    sharedSecret: toHex(await unsealer.sharedSecret(hex(vector.ephemeral_public))),
  };
}
"""

_OPEN_INVALID = """
async (vector) => {
  const envelope = await import("/static/js/envelope.js");
  const { hex, device } = window.vectorTools;
  const failure = async (pieceSize) => {
    try {
      const opener = new envelope.Opener(hex(vector.link_key), {
        passphrase: vector.passphrase, device: await device(vector.device),
      });
      const bytes = hex(vector.envelope);
      for (let i = 0; i < bytes.length; i += pieceSize) {
        await opener.feed(bytes.subarray(i, i + pieceSize));
      }
      await opener.finish();
      return "no error";
    } catch (error) {
      return error.name;
    }
  };
  return { whole: await failure(hex(vector.envelope).length), byteByByte: await failure(1) };
}
"""

_DEVICE_KEYS = """
async (vector) => {
  const device = await import("/static/js/device.js");
  const { hex, toHex } = window.vectorTools;
  const publicOf = async (pkcs8, algorithm, usages) => {
    const key = await crypto.subtle.importKey("pkcs8", hex(pkcs8), { name: algorithm }, true,
                                              usages);
    return toHex(Uint8Array.from(atob((await crypto.subtle.exportKey("jwk", key)).x
      .replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0)));
  };
  const raw = async (privateHex, algorithm, usages) => {
    const key = await device.importRawPrivateKey(hex(privateHex), algorithm, usages, true);
    return toHex(new Uint8Array(await crypto.subtle.exportKey("pkcs8", key)));
  };
  const parsed = await device.parseDeviceCode("  " + vector.device_code + "\\n");
  return {
    code: await device.deviceCode(hex(vector.ed25519_public), hex(vector.x25519_public)),
    edPublic: await publicOf(vector.ed25519_private_pkcs8, "Ed25519", ["sign"]),
    xPublic: await publicOf(vector.x25519_private_pkcs8, "X25519", ["deriveBits"]),
    edPkcs8: await raw(vector.ed25519_private, "Ed25519", ["sign"]),
    xPkcs8: await raw(vector.x25519_private, "X25519", ["deriveBits"]),
    parsed: { signingKey: toHex(parsed.signingKey), sealingKey: toHex(parsed.sealingKey),
              code: parsed.code },
    edValid: device.isValidEd25519PublicKey(hex(vector.ed25519_public)),
    xValid: await device.isValidX25519PublicKey(hex(vector.x25519_public)),
  };
}
"""

_PROOF = """
async ([proof, privatePkcs8, publicHex]) => {
  const device = await import("/static/js/device.js");
  const { hex, toHex } = window.vectorTools;
  const privateKey = await crypto.subtle.importKey("pkcs8", hex(privatePkcs8),
                                                   { name: "Ed25519" }, false, ["sign"]);
  const publicKey = await crypto.subtle.importKey("raw", hex(publicHex), { name: "Ed25519" },
                                                  true, ["verify"]);
  const { decode } = await import("/static/js/base64url.js");
  const message = device.deviceProofMessage(proof.secret_id_b64url, proof.challenge);
  const signature = await device.signDeviceProof(privateKey, proof.secret_id_b64url,
                                                 proof.challenge);
  return {
    message: toHex(message),
    messageFromBytes: toHex(device.deviceProofMessage(hex(proof.secret_id), proof.challenge)),
    proof: signature,
    verifies: await crypto.subtle.verify({ name: "Ed25519" }, publicKey, decode(proof.proof),
                                         message),
  };
}
"""

_CODE_ERROR = """
async (code) => {
  const device = await import("/static/js/device.js");
  try {
    await device.parseDeviceCode(code);
    return { kind: "no error" };
  } catch (error) {
    return { kind: error.kind ?? error.name, message: error.message };
  }
}
"""


@pytest.fixture(scope="module")
def vector_page(browser: Browser, web_server: ServerProcess) -> Iterator[Page]:
    """One page of the running server, kept for the whole module."""
    with open_vector_page(browser, web_server.url, _HELPERS) as page:
        yield page


@pytest.mark.parametrize("vector", POSITIVE, ids=[vector["name"] for vector in POSITIVE])
def test_positive_device_envelope(vector_page: Page, vector: dict[str, Any]) -> None:
    result = vector_page.evaluate(_SEAL_AND_OPEN, vector)
    assert result["envelope"] == vector["envelope"]
    assert result["sealedSize"] == len(vector["envelope"]) // 2
    assert result["sharedSecret"] == vector["shared_secret"]
    for opened in (result["whole"], result["byteByByte"]):
        assert opened["metadata"] == vector["metadata"]
        assert opened["content"] == vector["content"]
        assert opened["header"] == vector["header"]
        assert opened["sealAad"] == vector["seal_aad"]


@pytest.mark.parametrize("vector", NEGATIVE, ids=[vector["name"] for vector in NEGATIVE])
def test_negative_device_envelope(vector_page: Page, vector: dict[str, Any]) -> None:
    result = vector_page.evaluate(_OPEN_INVALID, vector)
    assert result == {"whole": vector["error"], "byteByByte": vector["error"]}, vector["reason"]


@pytest.mark.parametrize("name", sorted(DEVICES))
def test_device_keys_and_code(vector_page: Page, name: str) -> None:
    vector = DEVICES[name]
    result = vector_page.evaluate(_DEVICE_KEYS, vector)
    assert result == {
        "code": vector["device_code"],
        "edPublic": vector["ed25519_public"],
        "xPublic": vector["x25519_public"],
        "edPkcs8": vector["ed25519_private_pkcs8"],
        "xPkcs8": vector["x25519_private_pkcs8"],
        "parsed": {
            "signingKey": vector["ed25519_public"],
            "sealingKey": vector["x25519_public"],
            "code": vector["device_code"],
        },
        "edValid": True,
        "xValid": True,
    }


@pytest.mark.parametrize("proof", DEVICE["proofs"], ids=[p["name"] for p in DEVICE["proofs"]])
def test_device_proof(vector_page: Page, proof: dict[str, Any]) -> None:
    device = DEVICES[proof["device"]]
    result = vector_page.evaluate(
        _PROOF, [proof, device["ed25519_private_pkcs8"], device["ed25519_public"]]
    )
    assert result == {
        "message": proof["message"],
        "messageFromBytes": proof["message"],
        "proof": proof["proof"],
        "verifies": True,
    }


@pytest.mark.parametrize(
    "vector", DEVICE["invalid_codes"], ids=[v["name"] for v in DEVICE["invalid_codes"]]
)
def test_invalid_device_code(vector_page: Page, vector: dict[str, Any]) -> None:
    result = vector_page.evaluate(_CODE_ERROR, vector["code"])
    assert result["kind"] == vector["error"]
    assert result["message"].endswith(".")


def test_invalid_public_keys_are_refused(vector_page: Page) -> None:
    refused = vector_page.evaluate(
        """async ([ed, x]) => {
          const device = await import("/static/js/device.js");
          const { hex } = window.vectorTools;
          const edAccepted = ed.filter((v) => device.isValidEd25519PublicKey(hex(v.key)));
          const xAccepted = [];
          for (const v of x) if (await device.isValidX25519PublicKey(hex(v.key))) xAccepted.push(v);
          return { ed: edAccepted.map((v) => v.name), x: xAccepted.map((v) => v.name) };
        }""",
        [DEVICE["invalid_ed25519_public_keys"], DEVICE["invalid_x25519_public_keys"]],
    )
    assert refused == {"ed": [], "x": []}


def test_vectors_cover_what_the_spec_lists() -> None:
    names = {vector["name"] for vector in POSITIVE}
    assert names == {"device-text", "device-passphrase", "device-multi-chunk"}
    errors = {vector["error"] for vector in NEGATIVE}
    assert errors == {"DeviceRequired", "DecryptionFailed", "UnsupportedEnvelope"}
