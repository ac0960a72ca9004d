from __future__ import annotations

import json
import logging

import pytest

from atopos.server.identity import EphemeralIdentifiers, network_of
from atopos.server.logs import RedactingJsonFormatter, configure_logging, redact


def test_ipv6_counts_by_64() -> None:
    assert network_of("2001:db8:1:2::1") == network_of("2001:db8:1:2:ffff::9")
    assert network_of("2001:db8:1:2::1") != network_of("2001:db8:1:3::1")
    assert network_of("::ffff:192.0.2.1") == network_of("192.0.2.1")


@pytest.mark.parametrize(
    ("address", "unit"),
    [
        ("192.0.2.1", b"4" + bytes([192, 0, 2, 1])),
        ("::ffff:192.0.2.1", b"4" + bytes([192, 0, 2, 1])),
        ("2001:db8:1:2::1", b"6" + bytes.fromhex("20010db800010002")),
        ("fe80::1%eth0", b"6" + bytes.fromhex("fe80000000000000")),
        ("::1", b"6" + bytes(8)),
        ("unix:/run/atopos.sock", b"other:unix:/run/atopos.sock"),
        ("999.1.1.1", b"other:999.1.1.1"),
        ("", b"other:"),
    ],
)
def test_the_unit_a_limit_counts(address: str, unit: bytes) -> None:
    assert network_of(address) == unit


def test_families_never_collide() -> None:
    # Four bytes of an IPv4 address, and an IPv6 /64 whose bytes spell "other:..", stay apart.
    spelled = "6f74:6865:723a:7878::1"
    assert network_of(spelled) != network_of("other:xx")
    assert network_of("10.0.0.1") != network_of("a00:1::")


def test_identifiers_are_stable_then_rotate() -> None:
    idents = EphemeralIdentifiers(now=0, rotate_after=100)
    first = idents.for_address("192.0.2.1", 1)
    assert idents.for_address("192.0.2.1", 50) == first
    assert idents.for_address("192.0.2.2", 50) != first
    assert idents.for_address("192.0.2.1", 101) != first
    assert "192" not in first


def test_redact_scrubs_addresses_and_tokens() -> None:
    text = "from 203.0.113.9 and 2001:db8::1 id AbCdEfGhIjKlMnOpQrStUv key 0123456789abcdef0123"
    scrubbed = redact(text)
    for leak in ("203.0.113.9", "2001:db8::1", "AbCdEfGhIjKlMnOpQrStUv", "0123456789abcdef0123"):
        assert leak not in scrubbed
    assert redact("request ok") == "request ok"


def test_formatter_writes_json_without_exception_text() -> None:
    try:
        raise ValueError("secret AbCdEfGhIjKlMnOpQrStUv")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "t", logging.ERROR, __file__, 1, "boom %s", ("x",), sys.exc_info()
        )
    record.route = "/api/v1/secrets/{id}"
    line = RedactingJsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["msg"] == "boom x"
    assert entry["exception"] == "ValueError"
    assert entry["route"] == "/api/v1/secrets/{id}"
    assert "AbCdEfGhIjKlMnOpQrStUv" not in line
    assert "Traceback" not in line


@pytest.mark.parametrize(
    ("line", "leaks"),
    [
        # uvicorn's WebSocket handshake line begins with the peer as `address:port`.
        ("fd00::2:39836 - WebSocket /x [accepted]", ("fd00", "39836")),
        ("2a02:8108:1a2b:3c4d:5e6f:7a8b:9c0d:1e2f:51234 - x", ("2a02", "1e2f", "51234")),
        ("[2001:db8::1]:8443 - x", ("2001", "8443")),
        ("::1:45678 - x", ("::1", "45678")),
        ("203.0.113.9:5555 - x", ("203.0.113.9", "5555")),
        ("tor-circuit:1234:35062 - x", ("1234", "35062")),
        ("tor-circuit:48879 - x", ("48879",)),
    ],
)
def test_redact_scrubs_peers_with_their_ports(line: str, leaks: tuple[str, ...]) -> None:
    scrubbed = redact(line)
    assert scrubbed.endswith(" - x") or "WebSocket" in scrubbed
    for leak in leaks:
        assert leak not in scrubbed, scrubbed


@pytest.mark.parametrize("log_format", ["json", "human"])
def test_uvicorn_info_notes_are_dropped_in_both_formats(
    log_format: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("debug", log_format)
        logging.getLogger("uvicorn.error").info(
            '%s - "WebSocket %s" [accepted]', "fd00::2:39836", "/x"
        )
        logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    err = capsys.readouterr().err
    assert "WebSocket" not in err
    assert "Invalid HTTP request received." in err
