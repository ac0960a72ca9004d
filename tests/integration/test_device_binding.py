"""Device binding end to end (issue 5): the real `atopos` command in child processes, each
"device" its own ATOPOS_HOME (file store: ATOPOS_KEYRING=off), against a real server; and
the proof of possession at the API level with httpx."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from atopos.client.recovery import phrase_to_seed
from atopos.crypto import pow as proof_of_work
from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.crypto.device import DeviceKeys
from atopos.crypto.envelope import Metadata, seal
from tests.api_client import OCTETS, access_params, access_proof, envelope, remember
from tests.servers import ATOPOS, ServerProcess

SECRET = b"the vault code is 0451\n"


class Device:
    """One machine's `atopos`: its own ATOPOS_HOME, the file store, no terminal."""

    def __init__(self, home: Path, server: str) -> None:
        self.home = home
        self.server = server

    def run(self, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        env = {
            **os.environ,
            "ATOPOS_HOME": str(self.home),
            "ATOPOS_KEYRING": "off",
            "ATOPOS_SERVER": self.server,
        }
        return subprocess.run(
            [ATOPOS, *args], input=stdin, capture_output=True, env=env, timeout=120, check=False
        )

    def ok(self, *args: str, stdin: bytes = b"") -> str:
        done = self.run(*args, stdin=stdin)
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode()

    def init(self, *args: str) -> str:
        return self.ok("device", "init", *args).strip()

    def code(self) -> str:
        return self.ok("device", "show", "--no-qr").strip()


def one_line_refusal(done: subprocess.CompletedProcess[bytes], code: int = 4) -> str:
    """Exit `code`, nothing on stdout, exactly one line on stderr and no traceback."""
    assert done.returncode == code, done.stderr.decode()
    assert done.stdout == b""
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


def create_bound(creator: Device, code: str, *extra: str) -> tuple[str, str]:
    record = json.loads(
        creator.ok("secret", "create", "--json", "--bind-device", code, *extra, stdin=SECRET)
    )
    return record["link"], record["manage_link"]


def views_left(device: Device, manage_link: str) -> int:
    out = device.ok("secret", "status", manage_link)
    line = next(line for line in out.splitlines() if line.startswith("Views left:"))
    return int(line.split(":")[1])


def access_log(server: ServerProcess) -> list[tuple[str, int]]:
    """(route template, status) of every request the server logged."""
    entries = []
    for line in server.output().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("logger") == "atopos.access":
            entries.append((record["route"], record["status"]))
    return entries


def logged_after(
    server: ServerProcess, before: int, expected: tuple[str, int], timeout: float = 10
) -> list[tuple[str, int]]:
    """The access log past entry `before`, once it holds `expected`. The server writes a
    request's line just after sending the response, so the line may trail the client."""
    deadline = time.monotonic() + timeout
    while True:
        steps = access_log(server)[before:]
        if expected in steps or time.monotonic() > deadline:
            assert expected in steps, steps
            return steps
        time.sleep(0.02)  # polling interval


@pytest.fixture
def devices(tmp_path: Path, server: ServerProcess) -> tuple[Device, Device, Device]:
    return (
        Device(tmp_path / "device-a", server.url),
        Device(tmp_path / "device-b", server.url),
        Device(tmp_path / "creator", server.url),
    )


# -- CLI acceptance ------------------------------------------------------------------------


def test_bound_secret_reveals_only_on_its_device(
    server: ServerProcess, devices: tuple[Device, Device, Device]
) -> None:
    device_a, device_b, creator = devices
    code_a = device_a.init()
    device_b.init()
    assert device_a.code() == code_a
    link, manage_link = create_bound(creator, code_a)

    before = len(access_log(server))
    refusal = one_line_refusal(device_b.run("secret", "reveal", link))
    assert "bound to another device" in refusal
    # The server said no at the ticket step, and B never got as far as a reveal.
    steps = logged_after(server, before, ("/api/v1/secrets/{id}/ticket", 403))
    assert not any(route.endswith("/reveal") for route, _ in steps)
    assert views_left(creator, manage_link) == 1

    # A machine with no device at all is refused the same way.
    refusal = one_line_refusal(
        Device(creator.home.parent / "empty", server.url).run("secret", "reveal", link)
    )
    assert "bound to a device" in refusal
    assert views_left(creator, manage_link) == 1

    # The full link was not enough for B; A still gets the one view.
    assert device_a.ok("secret", "reveal", link).encode() == SECRET
    one_line_refusal(device_a.run("secret", "reveal", link), code=3)


def test_bound_file_secret_with_passphrase_saves_on_its_device(
    tmp_path: Path, devices: tuple[Device, Device, Device]
) -> None:
    device_a, _, creator = devices
    code_a = device_a.init()
    source = tmp_path / "plan.txt"
    source.write_bytes(b"file content\n" * 1000)
    passphrase = tmp_path / "pass"
    passphrase.write_text("two factors\n")
    link, _ = create_bound(
        creator, code_a, "--file", str(source), "--passphrase-file", str(passphrase)
    )
    out = tmp_path / "out"
    out.mkdir()
    device_a.ok("secret", "reveal", link, "--passphrase-file", str(passphrase), "-o", str(out))
    assert (out / "plan.txt").read_bytes() == source.read_bytes()


def test_a_mistyped_device_code_is_refused_before_anything_is_sent(
    server: ServerProcess, devices: tuple[Device, Device, Device]
) -> None:
    device_a, _, creator = devices
    code = device_a.init()
    typo = code[:40] + ("B" if code[40] != "B" else "C") + code[41:]
    before = len(access_log(server))
    for bad in (typo, code[:-1], "atd2" + code[4:]):
        message = one_line_refusal(
            creator.run("secret", "create", "--bind-device", bad, stdin=SECRET), code=2
        )
        assert "device code" in message
    assert access_log(server)[before:] == []


def test_device_commands_report_in_one_sentence(devices: tuple[Device, Device, Device]) -> None:
    device_a, _, _ = devices
    assert "no device" in one_line_refusal(device_a.run("device", "show"), code=2)
    assert "no device" in one_line_refusal(device_a.run("device", "export-phrase"), code=2)
    first = device_a.init()
    assert "--force" in one_line_refusal(device_a.run("device", "init"), code=2)
    assert device_a.code() == first
    second = device_a.init("--force")
    assert second != first
    assert device_a.code() == second
    shown = device_a.run("device", "show")
    assert shown.stdout.decode().strip() == second
    assert "█" in shown.stderr.decode() or "▀" in shown.stderr.decode()  # the QR code
    assert device_a.run("device", "wipe").returncode == 0
    assert device_a.run("device", "wipe").returncode == 0  # nothing left: still fine


def test_recovery_gives_back_the_same_device(devices: tuple[Device, Device, Device]) -> None:
    device_a, _, creator = devices
    code = device_a.init()
    phrase = device_a.ok("device", "export-phrase").strip()
    assert len(phrase.split()) == 24
    link, _ = create_bound(creator, code, "--views", "2")
    device_a.ok("device", "wipe")
    assert list(path for path in device_a.home.rglob("*") if path.is_file()) == []
    one_line_refusal(device_a.run("secret", "reveal", link))

    recovered = device_a.ok("device", "recover", stdin=phrase.encode() + b"\n").strip()
    assert recovered == code
    assert device_a.code() == code
    assert device_a.ok("secret", "reveal", link).encode() == SECRET

    # A wrong phrase changes nothing and says why in one sentence.
    words = phrase.split()
    swapped = " ".join([words[1], words[0], *words[2:]])
    if words[0] != words[1]:
        message = one_line_refusal(
            device_a.run("device", "recover", "--force", stdin=swapped.encode()), code=2
        )
        assert "recovery phrase" in message
    assert device_a.code() == code


def test_extra_lock_keeps_the_seed_off_the_disk(
    tmp_path: Path, server: ServerProcess, devices: tuple[Device, Device, Device]
) -> None:
    device_a, _, creator = devices
    right, wrong = tmp_path / "right", tmp_path / "wrong"
    right.write_text("correct horse battery staple\n")
    wrong.write_text("incorrect horse\n")
    code = device_a.init("--extra-lock", "--passphrase-file", str(right))
    assert device_a.code() == code  # the public code needs no passphrase

    message = one_line_refusal(device_a.run("device", "export-phrase"))
    assert "Extra Lock" in message
    message = one_line_refusal(
        device_a.run("device", "export-phrase", "--passphrase-file", str(wrong))
    )
    assert "passphrase is wrong" in message
    phrase = device_a.ok("device", "export-phrase", "--passphrase-file", str(right)).strip()
    seed = phrase_to_seed(phrase)
    keys = DeviceKeys.from_seed(seed)
    assert keys.public.code == code

    link, manage_link = create_bound(creator, code, "--views", "2")
    before = len(access_log(server))
    # The challenge walk (no stamp, whose request goes to the ticket route): nothing past
    # the challenge may be asked while the device cannot be loaded.
    message = one_line_refusal(
        device_a.run("secret", "reveal", "--no-stamp", link, "--device-passphrase-file", str(wrong))
    )
    assert "passphrase is wrong" in message
    message = one_line_refusal(device_a.run("secret", "reveal", "--no-stamp", link))
    assert "--device-passphrase-file" in message
    assert not any(
        route.endswith(("/ticket", "/reveal")) for route, _ in access_log(server)[before:]
    )
    assert views_left(creator, manage_link) == 2
    assert (
        device_a.ok("secret", "reveal", link, "--device-passphrase-file", str(right)).encode()
        == SECRET
    )

    secrets = [seed, *keys.private_bytes()]
    files = [path for path in device_a.home.rglob("*") if path.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            for form in (
                secret,
                secret.hex().encode(),
                secret.hex().upper().encode(),
                base64.b64encode(secret).rstrip(b"="),
                base64.urlsafe_b64encode(secret).rstrip(b"="),
            ):
                assert form not in data, path
        assert phrase.encode() not in data
    for path in [device_a.home, *device_a.home.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path


def test_without_extra_lock_files_are_still_private(devices: tuple[Device, Device, Device]) -> None:
    device_a, _, _ = devices
    device_a.init()
    paths = [device_a.home, *device_a.home.rglob("*")]
    assert len(paths) == 3
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path


# -- the proof at the API level ------------------------------------------------------------


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as c:
        yield c


def _create_bound(client: httpx.Client, url: str, keys: DeviceKeys, views: int = 1) -> str:
    content = b"bound"
    body = seal(
        content,
        Metadata(kind="text", size=len(content)),
        os.urandom(32),
        random_bytes=os.urandom,
        device=keys.public,
    )
    response = client.post(
        f"{url}/api/v1/secrets",
        params=access_params(body, views=views, device_key=b64url_encode(keys.public.signing_key)),
        content=body,
        headers=OCTETS,
    )
    assert response.status_code == 201, response.text
    remember(response.json()["id"], body)
    return str(response.json()["id"])


def _challenge(client: httpx.Client, url: str, sid: str) -> tuple[str, int, bool]:
    response = client.post(f"{url}/api/v1/secrets/{sid}/challenge")
    assert response.status_code == 200
    data = response.json()
    nonce = proof_of_work.solve(data["challenge"].encode(), data["bits"])
    return data["challenge"], nonce, data["is_bound"]


def _ticket(
    client: httpx.Client, url: str, sid: str, challenge: str, nonce: int, proof: str | None
) -> httpx.Response:
    # The right access proof: these tests are about the device proof.
    body: dict[str, object] = {
        "challenge": challenge,
        "nonce": nonce,
        "access_proof": access_proof(sid, challenge),
    }
    if proof is not None:
        body["device_proof"] = proof
    return client.post(f"{url}/api/v1/secrets/{sid}/ticket", json=body)


def test_a_proof_is_bound_to_one_challenge_and_one_secret(
    server: ServerProcess, client: httpx.Client
) -> None:
    url = server.url
    device, other = DeviceKeys.from_seed(os.urandom(32)), DeviceKeys.from_seed(os.urandom(32))
    first = _create_bound(client, url, device)
    second = _create_bound(client, url, device)

    challenge_1, nonce_1, is_bound = _challenge(client, url, first)
    assert is_bound
    proof_1 = b64url_encode(device.sign_proof(b64url_decode(first), challenge_1))
    # A second challenge for the same secret: the captured proof does not carry over.
    challenge_2, nonce_2, _ = _challenge(client, url, first)
    assert _ticket(client, url, first, challenge_2, nonce_2, proof_1).status_code == 403
    # Another secret bound to the same device: the proof does not carry over either.
    challenge_3, nonce_3, _ = _challenge(client, url, second)
    assert _ticket(client, url, second, challenge_3, nonce_3, proof_1).status_code == 403
    # Missing, malformed, or from another device.
    assert _ticket(client, url, first, challenge_2, nonce_2, None).status_code == 403
    assert _ticket(client, url, first, challenge_2, nonce_2, "A" * 86).status_code == 403
    assert _ticket(client, url, first, challenge_2, nonce_2, "not base64!").status_code == 403
    by_other = b64url_encode(other.sign_proof(b64url_decode(first), challenge_2))
    assert _ticket(client, url, first, challenge_2, nonce_2, by_other).status_code == 403
    refused = _ticket(client, url, first, challenge_2, nonce_2, None)
    assert refused.json()["error"] == "refused"
    assert "device proof" in refused.json()["message"]

    # Nothing was consumed by all that: the right proof still gets the one view.
    proof_2 = b64url_encode(device.sign_proof(b64url_decode(first), challenge_2))
    issued = _ticket(client, url, first, challenge_2, nonce_2, proof_2)
    assert issued.status_code == 200
    reveal = client.post(
        f"{url}/api/v1/secrets/{first}/reveal", json={"ticket": issued.json()["ticket"]}
    )
    assert reveal.status_code == 200
    # The original proof is still good for its own challenge on the first secret only
    # while that secret lives; it is gone now.
    assert _ticket(client, url, first, challenge_1, nonce_1, proof_1).status_code == 404

    # Neither the device key nor a proof ever reaches the server's output.
    output = server.output()
    assert b64url_encode(device.public.signing_key) not in output
    assert proof_1 not in output


def test_unbound_secrets_ignore_device_proofs(server: ServerProcess, client: httpx.Client) -> None:
    body, _ = envelope(b"plain")
    response = client.post(
        f"{server.url}/api/v1/secrets", params=access_params(body), content=body, headers=OCTETS
    )
    sid = response.json()["id"]
    remember(sid, body)
    challenge, nonce, is_bound = _challenge(client, server.url, sid)
    assert not is_bound
    assert _ticket(client, server.url, sid, challenge, nonce, "A" * 86).status_code == 200


@pytest.mark.parametrize(
    "device_key",
    [
        "",
        "A" * 42,
        "A" * 44,
        "AQ" + "A" * 41,  # 01 00 .. 00: the identity point, small order
        b64url_encode(bytes.fromhex("ec" + "ff" * 30 + "7f")),  # y = p - 1, order 2
        "not-base64-at-all!" + "A" * 25,
    ],
)
def test_create_refuses_a_device_key_that_is_not_an_ed25519_key(
    server: ServerProcess, client: httpx.Client, device_key: str
) -> None:
    body, _ = envelope(b"x")
    response = client.post(
        f"{server.url}/api/v1/secrets",
        params=access_params(body, device_key=device_key),
        content=body,
        headers=OCTETS,
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_input"
