"""Nothing sensitive reaches the server's output, at debug level, across every flow.

Two tests: raw API flows (where the test holds every challenge and ticket), and the real
`atopos` CLI in child processes (text, passphrase, file, manage status/delete, device-bound,
and its failures) against a server whose output is captured, plus the error statuses
(404, 405, 413, 422, 429) from a second, rate-limited server. Both grep everything the
servers printed for each id, key, token, ticket, challenge, passphrase, plaintext, file
name, device key and client address, in the encodings a careless log line would use.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import subprocess
import threading
from collections.abc import Iterable
from pathlib import Path

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from atopos.client.links import parse_manage_link, parse_share_link
from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.crypto.device import parse_device_code
from atopos.crypto.envelope import Metadata, seal
from tests.api_client import OCTETS, create, reveal, ticket
from tests.servers import ATOPOS, ServerProcess

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
    # Nor does the database keep anything of the client: no address, no user agent.
    stored = b"".join(path.read_bytes() for path in server.data_dir.rglob("*") if path.is_file())
    assert stored
    assert CLIENT_ADDRESS.encode() not in stored
    assert b"python-httpx" not in stored


def _spellings(raw: bytes) -> list[str]:
    """The ways a log line could print these bytes."""
    return [b64url_encode(raw), raw.hex(), base64.b64encode(raw).decode(), repr(raw)[2:-1]]


def _assert_clean(output: str, sensitive: Iterable[str]) -> None:
    for needle in sensitive:
        assert needle, "an empty needle would match anything"
        assert needle not in output, f"server output contains sensitive value {needle[:6]}..."
    assert CLIENT_ADDRESS not in output
    assert not re.search(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b", output)
    assert "Traceback" not in output


class RecordingProxy:
    """A TCP relay on 127.0.0.3 in front of the server that keeps every byte clients send:
    what the CLI puts on the wire, not only what the server chooses to print."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.sent = bytearray()
        self._upstream = (upstream_host, upstream_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.url = ""

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._relay, "127.0.0.3", 0), self._loop
        ).result(timeout=10)
        self._server = server
        self.url = f"http://127.0.0.3:{server.sockets[0].getsockname()[1]}"
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)

        async def pipe(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, record: bool
        ) -> None:
            try:
                while data := await source.read(65536):
                    if record:
                        self.sent += data
                    sink.write(data)
                    await sink.drain()
            except OSError:
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))


class Cli:
    """The `atopos` command as a user runs it: a child process with its own home."""

    def __init__(self, server: str, home: Path) -> None:
        self.env = {
            **os.environ,
            "ATOPOS_SERVER": server,
            "ATOPOS_HOME": str(home),
            "ATOPOS_KEYRING": "off",
        }

    def run(self, *args: str, stdin: bytes = b"", code: int = 0) -> str:
        done = subprocess.run(
            [ATOPOS, *args],
            input=stdin,
            capture_output=True,
            env=self.env,
            timeout=120,
            check=False,
        )
        assert done.returncode == code, (args[:2], done.returncode, done.stderr.decode()[-500:])
        return done.stdout.decode()

    def create(self, *args: str, stdin: bytes = b"") -> tuple[str, str]:
        made = json.loads(self.run("secret", "create", "--json", *args, stdin=stdin))
        return made["link"], made["manage_link"]


def test_no_secret_material_or_address_in_server_output_across_cli_flows(tmp_path: Path) -> None:
    """The CLI talks to the server through a recording relay, so the test also proves that
    no link key, passphrase, plaintext or file name is ever sent, only ciphertext."""
    server = ServerProcess(
        data_dir=tmp_path / "data", log_path=tmp_path / "server.log", host="127.0.0.2", pow_bits=4
    ).start()
    limited = ServerProcess(
        data_dir=tmp_path / "limited",
        log_path=tmp_path / "limited.log",
        host="127.0.0.2",
        env={"ATOPOS_RATE_LIMIT": "3"},
    ).start()
    tag = os.urandom(6).hex()
    sensitive: list[str] = []
    # Never on the wire at all (the ids, tokens and the device's signing key are sent).
    never_sent: list[str] = []
    proxy = RecordingProxy("127.0.0.2", server.port).__enter__()
    try:
        cli = Cli(proxy.url, tmp_path / "home")
        links: list[str] = []

        # Text, two views, both revealed (status between); then gone (exit 3).
        text = f"TEXT-{tag}".encode()
        link, manage = cli.create("--views", "2", stdin=text)
        links += [link, manage]
        assert cli.run("secret", "reveal", link).encode() == text
        assert cli.run("secret", "status", manage)
        assert cli.run("secret", "reveal", link).encode() == text
        cli.run("secret", "reveal", link, code=3)

        # Passphrase: refused with a wrong one (exit 4), then opened.
        passphrase = f"PASS-{tag}"
        (tmp_path / "pass").write_text(passphrase + "\n")
        (tmp_path / "wrong").write_text(f"WRONG-{tag}\n")
        pass_text = f"PASSTEXT-{tag}".encode()
        link, manage = cli.create(
            "--views", "3", "--passphrase-file", str(tmp_path / "pass"), stdin=pass_text
        )
        links += [link, manage]
        cli.run("secret", "reveal", link, "--passphrase-file", str(tmp_path / "wrong"), code=4)
        revealed = cli.run("secret", "reveal", link, "--passphrase-file", str(tmp_path / "pass"))
        assert revealed.encode() == pass_text
        sensitive += [passphrase, f"WRONG-{tag}"]

        # A file, its name inside the ciphertext; saved with -o; then deleted by its manager.
        name = f"NAME-{tag}.txt"
        file_content = f"FILE-{tag}".encode() * 100
        (tmp_path / name).write_bytes(file_content)
        link, manage = cli.create("--views", "2", "--file", str(tmp_path / name))
        links += [link, manage]
        out = tmp_path / "out"
        out.mkdir()
        cli.run("secret", "reveal", link, "-o", str(out))
        assert (out / name).read_bytes() == file_content
        cli.run("secret", "delete", manage)
        cli.run("secret", "reveal", link, code=3)
        sensitive += [name, f"NAME-{tag}"]

        # Device-bound: only the device it is bound to opens it; another is refused (4).
        device = Cli(proxy.url, tmp_path / "device-home")
        code = device.run("device", "init").strip().splitlines()[0]
        public = parse_device_code(code)
        bound_text = f"BOUND-{tag}".encode()
        link, manage = cli.create("--views", "2", "--bind-device", code, stdin=bound_text)
        links += [link, manage]
        other = Cli(proxy.url, tmp_path / "other-home")
        other.run("device", "init")
        other.run("secret", "reveal", link, code=4)
        assert device.run("secret", "reveal", link).encode() == bound_text
        sensitive += [code, *_spellings(public.signing_key), *_spellings(public.sealing_key)]
        never_sent += [code, *_spellings(public.sealing_key)]

        # A manage link with a wrong token is refused (exit 4).
        wrong_token = manage.rsplit("#", 1)[0] + "#" + b64url_encode(os.urandom(32))
        cli.run("secret", "status", wrong_token, code=4)
        links.append(wrong_token)

        plaintexts = [f"TEXT-{tag}", f"PASSTEXT-{tag}", f"FILE-{tag}", f"BOUND-{tag}"]
        sensitive += plaintexts
        never_sent += [*plaintexts, passphrase, f"WRONG-{tag}", name, f"NAME-{tag}"]
        for value in links:
            if "/s/" in value:
                parsed = parse_share_link(value)
                sensitive += [*_spellings(parsed.link_key)]
                never_sent += [*_spellings(parsed.link_key)]
            else:
                parsed_manage = parse_manage_link(value)
                token = b64url_decode(parsed_manage.manage_token)
                sensitive += [parsed_manage.manage_token, *_spellings(token)]
                parsed = parsed_manage  # type: ignore[assignment]
            sensitive += [parsed.secret_id, *_spellings(b64url_decode(parsed.secret_id))]

        # Error statuses on the rate-limited server: 404, 405, 413, 422, 429.
        with httpx.Client(timeout=30) as client:
            api = f"{limited.url}/api/v1/secrets"
            body, key = envelope_for(b"limited")
            created = create(client, limited.url, body)
            sid = str(created["id"])
            sensitive += [sid, str(created["manage_token"]), *_spellings(key)]
            assert client.get(f"{limited.url}/no/such/{sid}").status_code == 404
            assert client.get(f"{api}/{sid}/reveal").status_code == 405
            assert (
                client.post(f"{api}/{sid}/reveal", json={"ticket": "x" * 9000}).status_code == 413
            )
            assert client.post(f"{api}/{sid}/ticket", json={"challenge": sid}).status_code == 422
            statuses = [client.post(f"{api}/{sid}/challenge").status_code for _ in range(5)]
            assert 429 in statuses
    finally:
        proxy.__exit__()
        server.stop()
        limited.stop()
    # What left the CLI: ciphertext, ids, tokens, challenges, tickets; never a key or content.
    assert b"POST /api/v1/secrets" in proxy.sent
    for needle in never_sent:
        assert needle.encode() not in proxy.sent, f"the CLI sent {needle[:6]}..."
    output = server.output()
    limited_output = limited.output()
    for status in (200, 201, 204, 403, 404):
        assert f'"status":{status}' in output  # the flows ran and were logged
    for status in (404, 405, 413, 422, 429):
        assert f'"status":{status}' in limited_output
    _assert_clean(output, sensitive)
    _assert_clean(limited_output, sensitive)


def envelope_for(content: bytes) -> tuple[bytes, bytes]:
    key = os.urandom(32)
    return seal(content, Metadata("text", len(content)), key, random_bytes=os.urandom), key


def test_a_room_handshake_over_ipv6_logs_neither_address_nor_port(tmp_path: Path) -> None:
    """uvicorn notes every WebSocket handshake as `address:port - "WebSocket …"` at info
    level; over IPv6 with a five-digit port the address used to slip past the redaction, and
    the port always did. The server writes JSON here (its output is a file)."""
    server = ServerProcess(
        data_dir=tmp_path / "data", log_path=tmp_path / "server.log", host="::1"
    ).start()
    ports: list[int] = []

    async def handshake() -> None:
        url = server.url.replace("http://", "ws://", 1) + "/api/v1/rooms/" + "A" * 22
        async with connect(url, open_timeout=10, close_timeout=5) as websocket:
            ports.append(websocket.local_address[1])
            with contextlib.suppress(ConnectionClosed):
                await asyncio.wait_for(websocket.recv(), timeout=10)

    try:
        asyncio.run(handshake())
    finally:
        server.stop()
    output = server.output()
    assert ports, "the handshake did not happen"
    # The peer as uvicorn writes it (`::1:44944`, `[::1]:44944`); a JSON field's number
    # (`"pid":44944`) is not a port.
    assert not re.search(rf"[\w\]]:{ports[0]}\b", output)
    assert "::1" not in output
