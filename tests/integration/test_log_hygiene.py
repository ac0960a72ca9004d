"""Nothing sensitive reaches the server's output, at debug level, across every flow."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import httpx

from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.crypto.envelope import Metadata, seal
from tests.api_client import OCTETS, create, reveal, ticket
from tests.servers import ServerProcess

# The server listens on 127.0.0.2; the kernel gives loopback clients the source 127.0.0.1,
# so "127.0.0.1" in the output could only be a client address.
CLIENT_ADDRESS = "127.0.0.1"


def test_no_secret_material_or_address_in_server_output(tmp_path: Path) -> None:
    server = ServerProcess(
        data_dir=tmp_path / "data", log_path=tmp_path / "server.log", host="127.0.0.2", pow_bits=4
    ).start()
    sensitive: list[str] = []
    try:
        with httpx.Client(timeout=30) as client:
            plaintext = b"PLAINTEXT-" + os.urandom(8).hex().encode()
            key = os.urandom(32)
            body = seal(plaintext, Metadata("text", len(plaintext)), key, random_bytes=os.urandom)
            created = create(client, server.url, body, views=3)
            sid, token = str(created["id"]), str(created["manage_token"])
            auth = {"authorization": f"Bearer {token}"}
            challenge = client.post(f"{server.url}/api/v1/secrets/{sid}/challenge").json()
            value = ticket(client, server.url, sid)
            assert reveal(client, server.url, sid, value).status_code == 200
            # Failures of every kind.
            assert reveal(client, server.url, sid, value).status_code == 403
            assert reveal(client, server.url, sid, "A" * 78).status_code == 403
            wrong_nonce = client.post(
                f"{server.url}/api/v1/secrets/{sid}/ticket",
                json={"challenge": challenge["challenge"], "nonce": 2**64 - 1},
            )
            assert wrong_nonce.status_code in (200, 403)
            assert (
                client.post(f"{server.url}/api/v1/secrets/{sid}/ticket", content=b"{").status_code
                == 422
            )
            other = b64url_encode(os.urandom(16))
            assert client.post(f"{server.url}/api/v1/secrets/{other}/challenge").status_code == 404
            assert (
                client.get(f"{server.url}/api/v1/secrets/{sid}/status", headers=auth).status_code
                == 200
            )
            assert (
                client.get(
                    f"{server.url}/api/v1/secrets/{sid}/status",
                    headers={"authorization": "Bearer x"},
                ).status_code
                == 403
            )
            assert (
                client.post(
                    f"{server.url}/api/v1/secrets", content=b"junk", headers=OCTETS
                ).status_code
                == 422
            )
            assert (
                client.delete(f"{server.url}/api/v1/secrets/{sid}", headers=auth).status_code == 204
            )
            assert client.get(f"{server.url}/healthz").status_code == 200
            sensitive = [
                sid,
                b64url_decode(sid).hex(),
                token,
                b64url_encode(key),
                key.hex(),
                value,
                challenge["challenge"],
                plaintext.decode(),
                body[-32:].hex(),
                b64url_encode(body[-32:]),
                base64.b64encode(body[-32:]).decode(),
                other,
            ]
    finally:
        server.stop()
    output = server.output()
    assert '"route":"/api/v1/secrets/{id}/reveal"' in output  # debug access lines were written
    for needle in sensitive:
        assert needle not in output, f"server output contains sensitive value {needle[:6]}..."
    assert CLIENT_ADDRESS not in output
    assert not re.search(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b", output)
    assert "Traceback" not in output
