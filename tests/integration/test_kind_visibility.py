"""What the server learns of a secret's kind, exactly as docs/threat-model.md and
docs/operations.md say: the text/file bit the creator's client declares (stored, shown to the
manage link's holder only), and nothing else of the content's description: a file's name
never reaches the server's storage."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from atopos.crypto.base64url import b64url_decode
from tests.api_client import OCTETS, access_params, envelope
from tests.servers import ATOPOS, ServerProcess

FILE_NAME = "merger-plan-zx81q.pdf"


def _stored_bytes(data_dir: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(data_dir.iterdir()) if path.is_file())


def test_only_the_kind_is_in_the_clear_never_the_file_name(
    server: ServerProcess, tmp_path: Path
) -> None:
    source = tmp_path / FILE_NAME
    source.write_bytes(os.urandom(3000))
    created = subprocess.run(
        [ATOPOS, "--server", server.url, "secret", "create", "--json", "--file", str(source)],
        capture_output=True,
        timeout=120,
        check=False,
        env={**os.environ},
    )
    assert created.returncode == 0, created.stderr
    manage = urlsplit(json.loads(created.stdout)["manage_link"])
    sid = manage.path.rsplit("/", 1)[1]
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=30) as client:
        status = client.get(
            f"/secrets/{sid}/status", headers={"authorization": f"Bearer {manage.fragment}"}
        )
        assert status.status_code == 200, status.text
        assert status.json()["kind"] == "file"
        # A reader learns nothing of the kind before the view: the challenge does not say.
        challenge = client.post(f"/secrets/{sid}/challenge").json()
        # (has_access_key and argon2 are the key-knowledge proof's: docs/protocol/access.md.)
        assert set(challenge) == {
            "challenge",
            "bits",
            "expires_at",
            "is_bound",
            "has_passphrase",
            "has_access_key",
            "argon2",
        }
    # The name stays inside the ciphertext: not in the database, its WAL or anything beside.
    stored = _stored_bytes(server.data_dir)
    assert b64url_decode(sid) in stored  # the search does see what is stored
    for needle in (FILE_NAME, "merger-plan", "zx81q"):
        assert needle.encode() not in stored
        assert needle.encode("utf-16-le") not in stored


def test_the_kind_is_what_the_creator_declares(server: ServerProcess) -> None:
    body, _ = envelope(b"text inside")  # encrypted metadata says "text"
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=30) as client:
        created = client.post(
            "/secrets", params=access_params(body, kind="file"), content=body, headers=OCTETS
        )
        assert created.status_code == 201, created.text
        record = created.json()
        status = client.get(
            f"/secrets/{record['id']}/status",
            headers={"authorization": f"Bearer {record['manage_token']}"},
        )
        assert status.json()["kind"] == "file"
        without = client.post(
            "/secrets", params=access_params(body), content=body, headers=OCTETS
        ).json()
        default = client.get(
            f"/secrets/{without['id']}/status",
            headers={"authorization": f"Bearer {without['manage_token']}"},
        )
        assert default.json()["kind"] == "text"
