"""`atopos room` end to end: real processes on a loopback relay (the network relay double
until the real relay is merged), a TUI driven by textual's pilot, exit codes, no traces."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from atopos.cli.room_lock import LockPlan
from atopos.cli.room_tui import RoomApp
from atopos.client.transport import Transport
from atopos.crypto.room_safety import safety_code_lines
from atopos.protocol.room_creation import make_room
from atopos.randomness import system_random_bytes
from tests.integration.test_room_cli_relay import running_relay
from tests.servers import ServerProcess

ATOPOS = str(Path(sys.executable).with_name("atopos"))
WAIT = 30.0


@dataclasses.dataclass
class Relay:
    url: str
    server: ServerProcess | None = None  # the real one: its data directory and its log

    def traces(self) -> bytes:
        """Every byte the server wrote: its data directory and its debug-level log."""
        if self.server is None:
            return b""
        files = [p for p in self.server.data_dir.rglob("*") if p.is_file()]
        return b"".join(p.read_bytes() for p in [*files, self.server.log_path])


@pytest.fixture(params=["real", "double"])
def relay_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Relay]:
    """The real relay (`atopos serve`, debug logs) and the network double of the protocol
    sketch: the CLI must work with both."""
    if request.param == "double":
        with running_relay() as (url, _rooms):
            yield Relay(url)
        return
    server = ServerProcess(tmp_path / "data", tmp_path / "server.log").start()
    try:
        yield Relay(server.url, server)
    finally:
        server.stop()


@pytest.fixture
def relay(relay_server: Relay) -> str:
    return relay_server.url


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def snapshot(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else "dir"
        for p in sorted(directory.rglob("*"))
    }


def atopos(home: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ATOPOS_HOME": str(home)}
    return subprocess.run(
        [ATOPOS, *args], input=stdin, capture_output=True, text=True, timeout=60, env=env
    )


def create_room(home: Path, relay: str, *options: str) -> dict[str, str]:
    result = atopos(home, "--server", relay, "room", "create", *options)
    assert result.returncode == 0, result.stderr
    links: dict[str, str] = {}
    for line in result.stdout.splitlines():
        label, _, link = line.partition(": ")
        links[label.split(" (")[0]] = link
    return links


class ScriptClient:
    """`atopos room join --script` as a child process, its events read by a thread."""

    def __init__(
        self,
        home: Path,
        link: str,
        name: str,
        env: dict[str, str] | None = None,
        options: tuple[str, ...] = (),
        wait: float = WAIT,
    ) -> None:
        self._start(home, ("room", "join", link, "--script", "--name", name, *options), env, wait)

    @classmethod
    def with_arguments(cls, home: Path, arguments: tuple[str, ...]) -> ScriptClient:
        """A client started as `atopos ARGUMENTS` (`room join --resume ... --script`)."""
        client = cls.__new__(cls)
        client._start(home, arguments, None, WAIT)
        return client

    def _start(
        self, home: Path, arguments: tuple[str, ...], env: dict[str, str] | None, wait: float
    ) -> None:
        self.wait = wait
        self.process = subprocess.Popen(
            [ATOPOS, *arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "ATOPOS_HOME": str(home), **(env or {})},
        )
        self.events: list[dict[str, object]] = []
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)

    def wait_for(self, match: Callable[[dict[str, object]], bool]) -> dict[str, object]:
        for event in self.events:
            if match(event):
                return event
        deadline = time.monotonic() + self.wait
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None and self._lines.empty():
                    break
                continue
            event = json.loads(line)
            self.events.append(event)
            if match(event):
                return event
        raise AssertionError(f"event not seen; got {self.events}; {self.state()}")

    def state(self) -> str:
        """Whether the client still runs, else its exit code and what it said on stderr."""
        if self.process.poll() is None:
            return "still running"
        assert self.process.stderr is not None
        return f"exited {self.process.returncode}: {self.process.stderr.read()!r}"

    def say(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def finish(self) -> int:
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self.process.wait(timeout=WAIT)

    def messages(self) -> list[tuple[object, object]]:
        return [(e["name"], e["text"]) for e in self.events if e["event"] == "message"]


def epoch_with(count: int) -> Callable[[dict[str, object]], bool]:
    return lambda e: e["event"] == "epoch" and len(e["members"]) == count  # type: ignore[arg-type]


async def _pilot_until(app: RoomApp, pilot: object, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not done():
        assert time.monotonic() < deadline, app.lines
        await pilot.pause(0.05)  # type: ignore[attr-defined]


def test_three_clients_two_scripts_and_a_tui_share_order_and_safety_code(
    relay: str, relay_server: Relay, home: Path
) -> None:
    before = snapshot(home)
    links = create_room(home, relay, "--name", "Plans")
    ann = ScriptClient(home, links["Creator link"], "ann")
    ann.wait_for(epoch_with(1))
    bob = ScriptClient(home, links["Room link"], "bob")
    bob.wait_for(epoch_with(2))

    async def tui() -> tuple[list[str], str | None]:
        app = RoomApp(Transport(relay), LockPlan(links["Room link"], "cat"))
        async with app.run_test() as pilot:
            await _pilot_until(app, pilot, lambda: len(app.members) == 3)
            code = app.safety_code
            # senders first hold the epoch that has cat (else their words are history to it)
            ann.wait_for(epoch_with(3))
            bob.wait_for(epoch_with(3))
            ann.say("one from ann")
            ann.say("two from ann")
            bob.say("one from bob")
            await _pilot_until(app, pilot, lambda: sum(": " in x for x in app.lines) >= 3)
            await pilot.click("#input")
            await pilot.press(*"hi from cat", "enter")
            await _pilot_until(app, pilot, lambda: any("me: hi from cat" in x for x in app.lines))
            ann.wait_for(lambda e: e.get("text") == "hi from cat")
            bob.wait_for(lambda e: e.get("text") == "hi from cat")
            await pilot.press(*"/leave", "enter")
            await _pilot_until(app, pilot, lambda: app.outcome is not None)
        return app.lines, code

    lines, tui_code = asyncio.run(tui())
    ann_code = ann.wait_for(epoch_with(3))["safety_code"]
    bob_code = bob.wait_for(epoch_with(3))["safety_code"]
    assert ann_code == bob_code == tui_code
    # the window shows the 60 digits as three lines of four groups
    assert tui_code is not None
    shown = [f"  {line}" for line in safety_code_lines(tui_code)]
    assert any(lines[i : i + 3] == shown for i in range(len(lines))), lines
    # the same order per sender everywhere
    assert ann.messages() == [("bob", "one from bob"), ("cat", "hi from cat")]
    assert bob.messages() == [
        ("ann", "one from ann"),
        ("ann", "two from ann"),
        ("cat", "hi from cat"),
    ]
    said = [x for x in lines if "from" in x and ": " in x and not x.startswith("me")]
    assert [x for x in said if "ann" in x] == ["ann [0]: one from ann", "ann [0]: two from ann"]
    assert [x for x in said if "bob" in x] == ["bob [1]: one from bob"]
    # the TUI's leave reached the others
    ann.wait_for(epoch_with(2))
    assert ann.finish() == 0
    assert bob.finish() == 0
    # without Extra Lock, nothing about the room reached the device
    assert snapshot(home) == before
    # nor the server's disk or its debug log
    traces = relay_server.traces()
    room_id = links["Room link"].split("/r/")[1].split("#")[0]
    for needle in [
        room_id,
        "Plans",
        "one from ann",
        "hi from cat",
        links["Room link"].split("#")[1],
    ]:
        assert needle.encode() not in traces


def test_unknown_and_ended_rooms_exit_3(relay: str, home: Path) -> None:
    links = create_room(home, relay)
    ann = ScriptClient(home, links["Creator link"], "ann")
    ann.wait_for(epoch_with(1))
    ann.say("/end")
    ann.wait_for(lambda e: e["event"] in ("closing", "ended"))
    assert ann.finish() == 0
    result = atopos(home, "room", "join", links["Room link"], "--script")
    assert result.returncode == 3, result.stderr
    assert result.stderr.strip() == "Error: This room has ended or never existed."
    never = make_room(relay, system_random_bytes).member_link.text()  # never uploaded
    other = atopos(home, "room", "join", never, "--script")
    assert other.returncode == 3, other.stderr
    assert other.stderr.strip() == "Error: This room has ended or never existed."
    damaged = atopos(home, "room", "join", never[:-1], "--script")
    assert damaged.returncode == 2, damaged.stderr


def test_a_used_invite_exits_4(relay: str, home: Path) -> None:
    links = create_room(home, relay, "--invites", "1")
    ann = ScriptClient(home, links["Creator link"], "ann")
    ann.wait_for(epoch_with(1))
    guest = ScriptClient(home, links["Invite link 1"], "guest")
    guest.wait_for(epoch_with(2))
    again = atopos(home, "room", "join", links["Invite link 1"], "--script")
    assert again.returncode == 4, again.stderr
    assert "Traceback" not in again.stderr
    assert len(again.stderr.splitlines()) == 1
    assert guest.finish() == 0
    assert ann.finish() == 0


def test_knock_admit_and_refuse_from_the_cli(relay: str, home: Path) -> None:
    links = create_room(home, relay, "--knock")
    ann = ScriptClient(home, links["Creator link"], "ann")
    ann.wait_for(epoch_with(1))
    bob = ScriptClient(home, links["Room link"], "bob")
    knock = ann.wait_for(lambda e: e["event"] == "join_requested")
    assert knock["name"] == "bob"
    ann.say("secret before admission")
    ann.say(f"/admit {knock['index']}")
    bob.wait_for(epoch_with(2))
    assert bob.messages() == []  # nothing sent before the admission opens for bob
    eve = ScriptClient(home, links["Room link"], "eve")
    eve_knock = ann.wait_for(lambda e: e["event"] == "join_requested" and e["name"] == "eve")
    ann.say(f"/refuse {eve_knock['index']}")
    eve.wait_for(lambda e: e["event"] == "relay_error")
    assert eve.process.wait(timeout=WAIT) == 4
    assert not eve.messages()
    assert bob.finish() == 0
    assert ann.finish() == 0


def test_extra_lock_creator_link_resume_and_wipe(relay: str, home: Path, tmp_path: Path) -> None:
    passphrase = tmp_path / "pass.txt"
    passphrase.write_text("a long and lovely phrase\n")
    result = atopos(
        home,
        "--server",
        relay,
        "room",
        "create",
        "--name",
        "Plans",
        "--extra-lock",
        "--passphrase-file",
        str(passphrase),
    )
    assert result.returncode == 0, result.stderr
    assert "Creator link:" in result.stdout
    room_link = result.stdout.splitlines()[0].split(": ", 1)[1]
    assert room_link.split("#")[1] + "." not in result.stdout  # the creator link is not shown
    files = list((home / "rooms").iterdir())
    assert len(files) == 1
    fragment = room_link.split("#")[1].encode()
    room_id = room_link.split("/r/")[1].split("#")[0].encode()
    assert fragment not in files[0].read_bytes()
    assert room_id not in files[0].read_bytes()

    client = ScriptClient.with_arguments(
        home, ("room", "join", "--resume", "--passphrase-file", str(passphrase), "--script")
    )
    client.wait_for(epoch_with(1))
    bob = ScriptClient(home, room_link, "bob")
    bob.wait_for(epoch_with(2))
    client.wait_for(epoch_with(2))  # a message sent in epoch 1 would be history to bob
    client.say("kept only under the lock")
    bob.wait_for(lambda e: e.get("text") == "kept only under the lock")
    data = files[0].read_bytes()  # the running member's state, rewritten after every frame
    for needle in (b"kept only under the lock", b"bob", b"Plans", fragment, room_id):
        assert needle not in data
    client.say("/end")  # only the creator link can: the resumed link is the creator's
    bob.wait_for(lambda e: e["event"] in ("closing", "ended"))
    assert client.finish() == 0
    assert bob.finish() == 0
    assert list((home / "rooms").iterdir()) == []  # wiped when the room ended


def test_a_wrong_passphrase_resumes_nothing(relay: str, home: Path, tmp_path: Path) -> None:
    right, wrong = tmp_path / "right", tmp_path / "wrong"
    right.write_text("right phrase")
    wrong.write_text("wrong phrase")
    created = atopos(
        home, "--server", relay, "room", "create", "--extra-lock", "--passphrase-file", str(right)
    )
    assert created.returncode == 0, created.stderr
    before = snapshot(home)
    result = atopos(home, "room", "join", "--resume", "--passphrase-file", str(wrong), "--script")
    assert result.returncode == 4
    assert result.stderr.startswith("Error: No Extra Lock room state")
    assert snapshot(home) == before
