"""The secret-request vectors (tests/vectors/requests.json) against the browser's modules
(js/request-keys.js, js/request-links.js, js/access-proof.js) as the pages load them."""

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
DATA: dict[str, Any] = json.loads((VECTORS / "requests.json").read_text(encoding="utf-8"))

_KEYS = """
async (vector) => {
  const { fillTokenOf } = await import("/static/js/request-keys.js");
  const { accessKeyOf } = await import("/static/js/access-proof.js");
  const { decode, encode } = await import("/static/js/base64url.js");
  const requestKey = decode(vector.request_key);
  return {
    fill_token: encode(await fillTokenOf(requestKey)),
    access_key: encode((await accessKeyOf(requestKey)).publicKey),
  };
}
"""

_FRAGMENTS = """
async ({ request, pickup }) => {
  const links = await import("/static/js/request-links.js");
  const { encode } = await import("/static/js/base64url.js");
  const fragment = (link) => link.slice(link.indexOf("#") + 1);
  const parsedRequest = request.indexOf("#") < 0 ? null
    : await links.parseRequestFragment(fragment(request));
  const parsedPickup = pickup.indexOf("#") < 0 ? null : links.parsePickupFragment(fragment(pickup));
  return {
    request: parsedRequest === null ? null
      : { key: encode(parsedRequest.requestKey), code: parsedRequest.device.code },
    pickup: parsedPickup === null ? null
      : { key: encode(parsedPickup.requestKey), token: parsedPickup.requestToken },
  };
}
"""


@pytest.fixture(scope="module")
def vector_page(browser: Browser, web_server: ServerProcess) -> Iterator[Page]:
    with open_vector_page(browser, web_server.url, "() => {}") as page:
        yield page


@pytest.mark.parametrize("vector", DATA["keys"], ids=lambda v: v["name"])
def test_the_browser_derives_the_vectors_keys(vector_page: Page, vector: dict[str, str]) -> None:
    made = vector_page.evaluate(_KEYS, vector)
    assert made == {"fill_token": vector["fill_token"], "access_key": vector["access_key"]}


def test_the_browser_reads_the_links_fragments(vector_page: Page) -> None:
    links = DATA["links"]
    made = vector_page.evaluate(
        _FRAGMENTS, {"request": links["request_link"], "pickup": links["pickup_link"]}
    )
    assert made == {
        "request": {"key": links["request_key"], "code": links["device_code"]},
        "pickup": {"key": links["request_key"], "token": links["request_token"]},
    }


def test_the_browser_refuses_damaged_fragments(vector_page: Page) -> None:
    # Only what a page reads: the fragment (the id and the URL are the server's routing).
    for vector in DATA["invalid_request_links"]:
        if vector["part"] in ("fragment", "key", "device"):
            made = vector_page.evaluate(_FRAGMENTS, {"request": vector["link"], "pickup": ""})
            assert made["request"] is None, vector
    for vector in DATA["invalid_pickup_links"]:
        if vector["part"] in ("fragment", "key", "token"):
            made = vector_page.evaluate(_FRAGMENTS, {"request": "", "pickup": vector["link"]})
            assert made["pickup"] is None, vector
