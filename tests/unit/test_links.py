"""Share and manage links: strict parsing, exact round trips, no key in reprs."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atopos.client.links import (
    InvalidLink,
    ManageLink,
    ShareLink,
    parse_manage_link,
    parse_server_url,
    parse_share_link,
)
from atopos.crypto.base64url import b64url_encode
from atopos.errors import InvalidInput

SECRET_ID = b64url_encode(bytes(range(16)))
KEY = bytes(range(32))
KEY_TEXT = b64url_encode(KEY)
TOKEN = b64url_encode(bytes(range(100, 132)))
SHARE = f"https://atopos.example/s/{SECRET_ID}#{KEY_TEXT}"
MANAGE = f"https://atopos.example/m/{SECRET_ID}#{TOKEN}"

servers = st.sampled_from(
    [
        "http://127.0.0.1:8080",
        "https://atopos.example",
        "https://atopos.example/prefix",
        "http://[::1]:9000/a/b",
        "http://abcdefghijklmnop.onion",
    ]
)


@given(servers, st.binary(min_size=16, max_size=16), st.binary(min_size=32, max_size=32))
def test_share_link_round_trips(server: str, secret_id: bytes, key: bytes) -> None:
    link = ShareLink(server, b64url_encode(secret_id), key)
    assert parse_share_link(str(link)) == link


@given(servers, st.binary(min_size=16, max_size=16), st.binary(min_size=32, max_size=32))
def test_manage_link_round_trips(server: str, secret_id: bytes, token: bytes) -> None:
    link = ManageLink(server, b64url_encode(secret_id), b64url_encode(token))
    assert parse_manage_link(str(link)) == link


def test_share_link_parts() -> None:
    link = parse_share_link(f"  https://Atopos.Example:8443/base/s/{SECRET_ID}#{KEY_TEXT}\n")
    assert link.server == "https://atopos.example:8443/base"
    assert link.secret_id == SECRET_ID
    assert link.link_key == KEY


def test_keys_and_tokens_stay_out_of_reprs() -> None:
    share, manage = parse_share_link(SHARE), parse_manage_link(MANAGE)
    assert KEY_TEXT not in repr(share)
    assert repr(KEY) not in repr(share)
    assert TOKEN not in repr(manage)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (f"ftp://atopos.example/s/{SECRET_ID}#{KEY_TEXT}", "http:// or https://"),
        (f"atopos.example/s/{SECRET_ID}#{KEY_TEXT}", "http:// or https://"),
        (f"https:///s/{SECRET_ID}#{KEY_TEXT}", "no server host"),
        (f"https://atopos.example/s/{SECRET_ID}", "no key"),
        (f"https://atopos.example/s/{SECRET_ID}#", "no key"),
        (f"https://atopos.example/s/{SECRET_ID}#{KEY_TEXT[:-1]}", "key after '#'"),
        (f"https://atopos.example/s/{SECRET_ID}#{KEY_TEXT}A", "key after '#'"),
        (f"https://atopos.example/s/{SECRET_ID}#{KEY_TEXT}=", "key after '#'"),
        # Same length, non-canonical last character: it would decode to the same key.
        (f"https://atopos.example/s/{SECRET_ID}#{KEY_TEXT[:-1]}J", "key after '#'"),
        (f"https://atopos.example/s/{SECRET_ID[:-1]}#{KEY_TEXT}", "secret id"),
        (f"https://atopos.example/s/{SECRET_ID}A#{KEY_TEXT}", "secret id"),
        (f"https://atopos.example/s/{SECRET_ID[:-1]}+#{KEY_TEXT}", "secret id"),
        (f"https://atopos.example/s/{SECRET_ID}/#{KEY_TEXT}", "secret id"),
        (f"https://atopos.example/s/{SECRET_ID}?x=1#{KEY_TEXT}", "query"),
        (f"https://atopos.example/x/{SECRET_ID}#{KEY_TEXT}", "<server>/s/<id>"),
        (f"https://atopos.example/m/{SECRET_ID}#{KEY_TEXT}", "manage link, not a share link"),
        (f"https://user:pw@atopos.example/s/{SECRET_ID}#{KEY_TEXT}", "user name"),
        (f"https://atopos.example:99999/s/{SECRET_ID}#{KEY_TEXT}", "not a valid URL"),
        (f"https://atopos.example/s/{SECRET_ID}#{KEY_TEXT[:20]} {KEY_TEXT[20:]}", "spaces"),
        (f"https://atöpos.example/s/{SECRET_ID}#{KEY_TEXT}", "unexpected characters"),
        ("", "http:// or https://"),
    ],
)
def test_bad_share_links_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(InvalidLink) as caught:
        parse_share_link(text)
    assert says in caught.value.message
    assert caught.value.message.endswith(".")
    assert isinstance(caught.value, InvalidInput)  # the CLI maps it to exit 2


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (f"https://atopos.example/s/{SECRET_ID}#{KEY_TEXT}", "share link, not a manage link"),
        (f"https://atopos.example/m/{SECRET_ID}", "no token"),
        (f"https://atopos.example/m/{SECRET_ID}#{TOKEN[:-2]}", "token after '#'"),
        (f"https://atopos.example/m/{SECRET_ID}#{TOKEN}%20", "token after '#'"),
    ],
)
def test_bad_manage_links_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(InvalidLink, match=says):
        parse_manage_link(text)


def test_random_keys_round_trip_through_text() -> None:
    for _ in range(200):
        key = os.urandom(32)
        assert parse_share_link(str(ShareLink("http://h", SECRET_ID, key))).link_key == key


@pytest.mark.parametrize(
    ("text", "server"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("HTTPS://Atopos.Example/Prefix/", "https://atopos.example/Prefix"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_server_urls_are_normalized(text: str, server: str) -> None:
    assert parse_server_url(text) == server


@pytest.mark.parametrize(
    "text",
    ["127.0.0.1:8080", "file:///tmp/x", "http://h/?a=1", "http://h/#frag", "http://h#", "http://"],
)
def test_bad_server_urls_are_rejected(text: str) -> None:
    with pytest.raises(InvalidLink):
        parse_server_url(text)
