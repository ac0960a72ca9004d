"""The shared vectors of tests/vectors/ against the browser's modules, loaded from the
running server into a page as the pages load them (pytest runs the same files against the
Python code: tests/unit/test_pow_vectors.py, test_link_vectors.py, test_shared_constants.py).

- constants.json: every browser twin of a Python constant has the stated value;
- pow.json: pow-worker.js passes exactly the nonces that pass, and finds the smallest one;
- links.json: links.js reads the id and the fragment of each link as the Python client does
  (the parts a page reads; the rest of the URL got the browser to the page) and prints a
  share or manage link in the canonical form.
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
CONSTANTS: list[dict[str, Any]] = json.loads((VECTORS / "constants.json").read_text())["constants"]
POW: dict[str, Any] = json.loads((VECTORS / "pow.json").read_text(encoding="utf-8"))
LINKS: list[dict[str, Any]] = json.loads((VECTORS / "links.json").read_text(encoding="utf-8"))[
    "vectors"
]
# The browser reads only the id and the fragment of the address it is at.
PAGE_LINKS = [vector for vector in LINKS if vector["valid"] or vector["part"] != "url"]
# JavaScript numbers are exact up to 2**53 - 1; the pages never try a larger nonce.
MAX_SAFE_INTEGER = 2**53 - 1

_JS_CONSTANTS = """
async (references) => {
  const values = {};
  for (const reference of references) {
    const [file, path] = reference.split(":");
    let value = await import(`/static/js/${file}`);
    for (const name of path.split(".")) value = value[name];
    values[reference] = value instanceof Uint8Array ? new TextDecoder().decode(value) : value;
  }
  return values;
}
"""

# Run pow-worker.js as the pages do. With `untilFound` false it answers whether `start`
# itself passes: the worker checks its nonces in order and reports a passing `start` in its
# first message; anything else first (a later nonce, a progress report) means it failed.
_JS_POW = """
({ challenge, bits, start, stride, untilFound }) => new Promise((resolve, reject) => {
  const worker = new Worker("/static/js/pow-worker.js");
  worker.onmessage = ({ data }) => {
    if (data.error !== undefined) reject(new Error(data.error));
    else if (data.nonce !== undefined) resolve(data.nonce);
    else if (!untilFound) resolve(null);
    else return;
    worker.terminate();
  };
  worker.onerror = () => { worker.terminate(); reject(new Error("the worker failed")); };
  worker.postMessage({ challenge, bits, start, stride });
})
"""

_JS_LINK = """
async (vector) => {
  const links = await import("/static/js/links.js");
  const { LINK_KEY_BYTES } = await import("/static/js/envelope.js");
  const { decode } = await import("/static/js/base64url.js");
  const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  const url = new URL(vector.link);
  const fragment = url.hash.slice(1);
  const size = vector.kind === "share" ? LINK_KEY_BYTES : links.MANAGE_TOKEN_BYTES;
  const bytes = links.fragmentBytes(fragment, size);
  const id = links.secretIdOf(url.pathname);
  let printed = null;
  if (id !== null && bytes !== null) {
    printed = vector.kind === "share"
      ? links.shareLink(id, bytes)
      : links.manageLink(id, fragment);
  }
  return {
    id,
    idHex: id && toHex(decode(id)),
    fragmentHex: bytes && toHex(bytes),
    fragment,
    printed,
  };
}
"""


@pytest.fixture(scope="module")
def vector_page(browser: Browser, web_server: ServerProcess) -> Iterator[Page]:
    with open_vector_page(browser, web_server.url, "() => {}") as page:
        yield page


def test_js_constants_match_the_shared_file(vector_page: Page) -> None:
    references = [reference for constant in CONSTANTS for reference in constant["js"]]
    values = vector_page.evaluate(_JS_CONSTANTS, references)
    drifted = {
        f"{constant['name']} ({reference})": (values[reference], constant["value"])
        for constant in CONSTANTS
        for reference in constant["js"]
        if values[reference] != constant["value"]
    }
    assert drifted == {}, "JS value, constants.json value"


@pytest.mark.parametrize("vector", POW["vectors"], ids=[v["name"] for v in POW["vectors"]])
def test_pow_worker_passes_exactly_the_passing_nonces(
    vector_page: Page, vector: dict[str, Any]
) -> None:
    for entry in vector["nonces"]:
        if entry["nonce"] > MAX_SAFE_INTEGER:
            continue
        found = vector_page.evaluate(
            _JS_POW,
            {
                "challenge": vector["challenge"],
                "bits": vector["bits"],
                "start": entry["nonce"],
                "stride": 1_000_003,
                "untilFound": False,
            },
        )
        assert (found == entry["nonce"]) is entry["passes"], entry
    smallest = vector_page.evaluate(
        _JS_POW,
        {
            "challenge": vector["challenge"],
            "bits": vector["bits"],
            "start": 0,
            "stride": 1,
            "untilFound": True,
        },
    )
    assert smallest == vector["first_nonce"]


@pytest.mark.parametrize("vector", PAGE_LINKS, ids=[v["name"] for v in PAGE_LINKS])
def test_links_js_reads_each_link_as_python_does(
    vector_page: Page, web_server: ServerProcess, vector: dict[str, Any]
) -> None:
    result = vector_page.evaluate(_JS_LINK, vector)
    if not vector["valid"]:
        damaged = result["id"] if vector["part"] == "id" else result["fragmentHex"]
        assert damaged is None, result
        return
    assert result["id"] == vector["secret_id"]
    assert result["idHex"] == vector["secret_id_hex"]
    if vector["kind"] == "share":
        assert result["fragmentHex"] == vector["link_key_hex"]
    else:
        assert result["fragment"] == vector["manage_token"]
    # The pages print links for their own server; the rest is the canonical form.
    assert result["printed"] == web_server.url + vector["canonical"][len(vector["server"]) :]


def test_the_page_runs_id_and_fragment_vectors() -> None:
    assert {v["part"] for v in PAGE_LINKS if not v["valid"]} == {"id", "fragment"}
