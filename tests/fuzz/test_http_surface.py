"""The server's own parsing of what arrives over HTTP, fuzzed through a live server: query
parameters of create (views, expires_in, kind, device_key), path ids, Authorization headers,
content types, and the bodies of create, ticket and reveal.

Schemathesis (tests/integration/test_schemathesis.py) generates requests from the OpenAPI
document; these go where a schema does not lead: repeated and unknown parameters, numbers
with signs and spaces, non-ASCII, ids of every length, near-valid envelopes. The property:
a 2xx or a 4xx with the JSON error body, never a 5xx, and a create is accepted only when
every parameter is valid.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from atopos.crypto.access_proof import AccessSigner
from atopos.crypto.base64url import b64url_encode
from atopos.crypto.device import DeviceKeys
from atopos.server.config import ServerConfig, rate_limits
from tests.api_client import OCTETS, access_params, envelope
from tests.fuzz.test_parsers import header_like, json_bodies
from tests.fuzzing import fuzz_settings
from tests.servers import ManualClock, in_process_server

pytestmark = pytest.mark.fuzz

ALPHABET = string.ascii_letters + string.digits + "-_"
VALID_DEVICE_KEY = b64url_encode(DeviceKeys.from_seed(bytes(32)).public.signing_key)
VALID_ACCESS_KEY = b64url_encode(AccessSigner(bytes(32)).public_key)


@pytest.fixture(scope="module")
def surface(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, httpx.Client]]:
    config = ServerConfig(
        data_dir=tmp_path_factory.mktemp("surface") / "data",
        pow_bits=0,
        max_content_bytes=64 * 1024,
        **rate_limits(0),
    )
    with (
        in_process_server(config, ManualClock(1_800_000_000)) as url,
        httpx.Client(timeout=30) as client,
    ):
        yield url, client


def _is_clean(response: httpx.Response) -> bool:
    assert response.status_code < 500, response.text[:300]
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/json"
        assert set(response.json()) == {"error", "message"}
    return True


numbers = st.one_of(
    st.integers(min_value=-5, max_value=10**13).map(str),
    st.sampled_from(["", " 1", "1 ", "+1", "01", "1e3", "0x10", "\uff11", "3600.0", "\u0663"]),
    st.text(max_size=8),
)
parameter = st.one_of(
    st.tuples(st.just("views"), numbers),
    st.tuples(st.just("expires_in"), numbers),
    st.tuples(st.just("kind"), st.sampled_from(["text", "file", "TEXT", "", "dir"]) | st.text()),
    st.tuples(
        st.just("device_key"),
        st.sampled_from([VALID_DEVICE_KEY, "", "A" * 43, VALID_DEVICE_KEY + "A"])
        | st.text(ALPHABET, max_size=50),
    ),
    st.tuples(
        st.just("access_key"),
        st.sampled_from([VALID_ACCESS_KEY, "", "A" * 43, VALID_ACCESS_KEY + "A"])
        | st.text(ALPHABET, max_size=50),
    ),
    st.tuples(st.text(max_size=10), st.text(max_size=10)),
)


@fuzz_settings(150)
@given(st.lists(parameter, max_size=5))
def test_create_parameters_are_accepted_only_when_valid(
    surface: tuple[str, httpx.Client], parameters: list[tuple[str, str]]
) -> None:
    url, client = surface
    query = "&".join(f"{quote(name)}={quote(value)}" for name, value in parameters)
    response = client.post(
        f"{url}/api/v1/secrets?{query}", content=envelope(b"q")[0], headers=OCTETS
    )
    assert _is_clean(response)
    if response.status_code == 201:
        given_names = [name for name, _ in parameters]
        assert len(given_names) == len(set(given_names))
        values = dict(parameters)
        assert set(values) <= {"views", "expires_in", "kind", "device_key", "access_key"}
        assert values.get("access_key") == VALID_ACCESS_KEY
        if "views" in values:
            assert 1 <= int(values["views"]) <= 100
        if "expires_in" in values:
            assert 60 <= int(values["expires_in"]) <= 30 * 24 * 3600
        assert values.get("kind", "text") in ("text", "file")
        assert values.get("device_key", VALID_DEVICE_KEY) == VALID_DEVICE_KEY
    else:
        assert response.status_code == 422


@fuzz_settings(150)
@given(
    st.one_of(header_like(), st.binary(max_size=300)),
    st.sampled_from(["application/octet-stream", "application/json", "", "text/plain"]),
)
def test_create_bodies_are_envelopes_or_refused(
    surface: tuple[str, httpx.Client], body: bytes, content_type: str
) -> None:
    url, client = surface
    headers = {"content-type": content_type} if content_type else {}
    response = client.post(
        f"{url}/api/v1/secrets", params=access_params(body), content=body, headers=headers
    )
    assert _is_clean(response)
    # A bare header and random bytes are never long enough to hold a sealed record.
    assert response.status_code == 422


@fuzz_settings(150)
@given(
    st.one_of(st.text(ALPHABET, max_size=30), st.text(max_size=30).map(quote)),
    st.sampled_from(["challenge", "ticket", "reveal", "status", "receipts", ""]),
    st.one_of(
        st.none(), st.text(max_size=60), st.text(ALPHABET, max_size=60).map("Bearer ".__add__)
    ),
    json_bodies(),
)
def test_ids_tokens_and_json_bodies_never_break_a_route(
    surface: tuple[str, httpx.Client],
    secret_id: str,
    route: str,
    authorization: str | None,
    body: bytes,
) -> None:
    url, client = surface
    path = f"{url}/api/v1/secrets/{secret_id}" + (f"/{route}" if route else "")
    headers = {"content-type": "application/json"}
    # What h11 lets a client send: printable ASCII without surrounding white space.
    if (
        authorization
        and authorization.isascii()
        and authorization.isprintable()
        and (authorization == authorization.strip())
    ):
        headers["authorization"] = authorization
    method = {"status": "GET", "receipts": "GET", "": "DELETE"}.get(route, "POST")
    response = client.request(method, path, content=body, headers=headers)
    assert _is_clean(response)
