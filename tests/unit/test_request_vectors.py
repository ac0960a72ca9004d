"""The secret-request vectors (tests/vectors/requests.json) against the Python library: the
fill token and its hash, the access key of the filled secret, and the two links."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from atopos.client.links import InvalidLink
from atopos.client.request_links import (
    PickupLink,
    RequestLink,
    is_pickup_link,
    parse_pickup_link,
    parse_request_link,
)
from atopos.crypto.access_proof import AccessSigner
from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.crypto.device import parse_device_code
from atopos.crypto.request_keys import fill_token_hash, fill_token_of

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
DATA: dict[str, Any] = json.loads((VECTORS / "requests.json").read_text(encoding="utf-8"))


def test_the_vectors_are_current() -> None:
    generator = VECTORS / "generate_request_vectors.py"
    done = subprocess.run([sys.executable, str(generator), "--check"], check=False)
    assert done.returncode == 0


@pytest.mark.parametrize("vector", DATA["keys"], ids=lambda v: v["name"])
def test_request_keys(vector: dict[str, str]) -> None:
    request_key = b64url_decode(vector["request_key"])
    fill_token = fill_token_of(request_key)
    assert b64url_encode(fill_token) == vector["fill_token"]
    assert fill_token_hash(fill_token).hex() == vector["fill_token_hash"]
    assert b64url_encode(AccessSigner(request_key).public_key) == vector["access_key"]


def test_links_are_written_and_read_as_the_vectors_say() -> None:
    links = DATA["links"]
    key = b64url_decode(links["request_key"])
    device = parse_device_code(links["device_code"])
    request = RequestLink(links["server"], links["request_id"], key, device)
    pickup = PickupLink(links["server"], links["request_id"], key, links["request_token"])
    assert str(request) == links["request_link"]
    assert str(pickup) == links["pickup_link"]
    assert parse_request_link(links["request_link"]) == request
    assert parse_pickup_link(links["pickup_link"]) == pickup
    assert is_pickup_link(links["pickup_link"])
    assert not is_pickup_link(links["request_link"])
    assert not is_pickup_link("https://host/ask/atopos/s/" + links["request_id"] + "#key")
    assert links["request_key"] not in repr(request)
    assert links["request_token"] not in repr(pickup)


@pytest.mark.parametrize("vector", DATA["invalid_request_links"], ids=lambda v: v["link"][-12:])
def test_damaged_request_links_are_refused(vector: dict[str, str]) -> None:
    with pytest.raises(InvalidLink):
        parse_request_link(vector["link"])


@pytest.mark.parametrize("vector", DATA["invalid_pickup_links"], ids=lambda v: v["link"][-12:])
def test_damaged_pickup_links_are_refused(vector: dict[str, str]) -> None:
    with pytest.raises(InvalidLink):
        parse_pickup_link(vector["link"])
