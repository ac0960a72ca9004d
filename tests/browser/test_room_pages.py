"""The room pages (/rooms, /r/{room_id}) in Debian's Chromium against the real server (pages
and relay on one loopback origin, so the page's CSP, `connect-src 'self'`, holds), with
Python members in the same rooms: protocol/room_member.py over a real `websockets`
connection.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from websockets.sync.client import connect

from atopos.clock import SystemClock
from atopos.crypto import pow as proof_of_work
from atopos.crypto.room_safety import safety_code_lines
from atopos.protocol.room_creation import make_room
from atopos.protocol.room_errors import RoomProtocolError
from atopos.protocol.room_events import (
    EpochStarted,
    MessageDelivered,
    MessageReceived,
    RelayError,
)
from atopos.protocol.room_link import parse_room_link
from atopos.protocol.room_member import MemberState, RoomMember
from atopos.randomness import system_random_bytes
from atopos.server.middleware import CONTENT_SECURITY_POLICY
from tests.browser.conftest import DESKTOP, PHONE, SECURITY_LEVELS, security_level
from tests.browser.harness import TIMEOUT_MS, Guard, screenshot
from tests.room_relay_server import relay_server

# The one name Extra Lock keeps its sealed record under (js/room-lock.js).
LOCK_STORAGE_KEY = "atopos-room-lock"

# -- the real server: pages and relay on one origin -------------------------------------------


@dataclass
class RoomServer:
    url: str


@pytest.fixture(scope="module")
def room_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoomServer]:
    """`create_app` on loopback (tests/room_relay_server.py): the pages, the room creation
    routes (proof of work at 0 bits) and the relay, behind the server's edge middleware."""
    with relay_server(tmp_path_factory.mktemp("rooms"), SystemClock()) as server:
        yield RoomServer(server.url)


@pytest.fixture
def contexts(browser: Browser, room_server: RoomServer) -> Iterator[Any]:
    made: list[tuple[BrowserContext, Guard]] = []

    def make(using: Browser | None = None, **options: Any) -> tuple[BrowserContext, Guard]:
        """A context of `using`, the test's own browser by default."""
        options.setdefault("viewport", DESKTOP)
        context = (using or browser).new_context(**options)
        context.set_default_timeout(TIMEOUT_MS)
        guard = Guard(room_server.url)
        guard.watch(context)
        made.append((context, guard))
        return context, guard

    yield make
    for context, _ in made:
        context.close()
    for _, guard in made:
        guard.check()


# -- a Python member on a real WebSocket ------------------------------------------------------


class PythonMember:
    """protocol/room_member.py over `websockets` in a thread: commands in, events out."""

    def __init__(self, link: str, name: str) -> None:
        parsed = parse_room_link(link)
        self.member = RoomMember(parsed, name, system_random_bytes)
        ws_url = parsed.base_url.replace("http", "ws", 1) + "/api/v1/rooms/" + parsed.room_path[3:]
        self.events: list[Any] = []
        self.errors: list[RoomProtocolError] = []
        self.received: list[str] = []
        self.commands: queue.Queue[Any] = queue.Queue()
        self.lock = threading.Lock()
        self.socket = connect(ws_url, compression=None, legacy=True)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with contextlib.suppress(Exception):
            while True:
                with contextlib.suppress(TimeoutError):
                    text = self.socket.recv(timeout=0.05)
                    self.received.append(text[:60])
                    with self.lock:
                        try:
                            self.events += self.member.receive(text, time.time())
                        except RoomProtocolError as error:
                            self.errors.append(error)
                with self.lock:
                    while not self.commands.empty():
                        self.commands.get()(self.member)
                    frames = self.member.outgoing()
                # A frame sent after the relay closed is lost; what it sent first is still read.
                with contextlib.suppress(Exception):
                    for frame in frames:
                        self.socket.send(frame)

    def do(self, command: Any) -> None:
        self.commands.put(command)

    def wait_for(self, predicate: Any, what: str, timeout: float = 20) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for event in self.events:
                    if predicate(event):
                        return event
            threading.Event().wait(0.05)  # polling interval
        raise AssertionError(
            f"no {what}; events: {self.events}, errors: {self.errors}, frames: {self.received}"
        )

    def texts(self) -> list[str]:
        with self.lock:
            return [e.text for e in self.events if isinstance(e, MessageReceived)]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.socket.close()


def _python_room(server: RoomServer, **options: Any) -> Any:
    """make_room, the challenge and its proof of work, the upload: as a client does."""
    new = make_room(server.url, system_random_bytes, **options)
    room_id = new.creation.room_id
    challenge = httpx.post(f"{server.url}/api/v1/rooms/{room_id}/challenge", timeout=10).json()
    nonce = proof_of_work.solve(challenge["challenge"].encode(), challenge["bits"])
    body = msgspec.to_builtins(new.creation) | {"challenge": challenge["challenge"], "nonce": nonce}
    response = httpx.post(f"{server.url}/api/v1/rooms", json=body, timeout=10)
    assert response.status_code == 201, response.text
    return new


# -- steps in the page -----------------------------------------------------------------------


def _state(page: Page, name: str) -> None:
    expect(page.locator(f'[data-state="{name}"]:not([hidden])')).to_be_visible(timeout=TIMEOUT_MS)


def _join(page: Page, link: str, name: str) -> None:
    page.goto(link)
    _state(page, "ready")
    page.get_by_label("Your name in this room").fill(name)
    page.get_by_role("button", name="Join").click()


def _send(page: Page, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")


def _safety(page: Page) -> str:
    """The shown safety code in its canonical form (the page breaks it into three lines)."""
    return " ".join((page.locator("#safety-code").text_content() or "").split())


def _create_in_browser(page: Page, server: RoomServer, **fields: Any) -> dict[str, Any]:
    page.goto(f"{server.url}/rooms")
    _state(page, "compose")
    page.get_by_label("Room name").fill(fields.get("name", "Plans"))
    if fields.get("knock"):
        page.get_by_label("Members admit each newcomer").check()
    page.get_by_label("Single-use invites").fill(str(fields.get("invites", 0)))
    page.get_by_role("button", name="Make the room").click()
    _state(page, "done")
    return {
        "member": page.locator("#member-link").text_content(),
        "creator": page.locator("#creator-link").text_content(),
        "invites": page.locator("#invite-links code").all_text_contents(),
    }


# -- tests -----------------------------------------------------------------------------------


def test_the_page_reads_the_link_removes_the_key_and_waits_for_join(
    contexts: Any, room_server: RoomServer
) -> None:
    new = _python_room(room_server, name="Quiet")
    context, guard = contexts()
    page = context.new_page()
    page.goto(new.member_link.text())
    _state(page, "ready")
    assert page.evaluate("location.hash") == ""
    assert page.evaluate("location.href") == f"{room_server.url}{new.member_link.room_path}"
    # about:blank and this page: the entry with the key was replaced, not pushed.
    assert page.evaluate("history.length") == 2
    assert not [r for r in guard.requests if "/api/" in r], guard.requests
    screenshot(page, "room-ready-desktop")


def test_a_damaged_link_says_so_without_any_request(contexts: Any, room_server: RoomServer) -> None:
    context, guard = contexts()
    page = context.new_page()
    page.goto(f"{room_server.url}/r/AAECAwQFBgcICQoLDA0ODw#short")
    _state(page, "broken")
    assert page.evaluate("location.hash") == ""
    assert not [r for r in guard.requests if "/api/" in r]


def test_two_browsers_and_two_python_members_talk_with_one_safety_code(
    contexts: Any, room_server: RoomServer
) -> None:
    alice_context, _ = contexts()
    alice = alice_context.new_page()
    links = _create_in_browser(alice, room_server, name="Plans")
    screenshot(alice, "room-created-desktop")
    _join(alice, links["creator"], "alice")
    _state(alice, "room")
    bob = PythonMember(links["member"], "bob")
    carol_context, _ = contexts(viewport=PHONE, color_scheme="dark")
    carol = carol_context.new_page()
    _join(carol, links["member"], "carol")
    _state(carol, "room")
    dave = PythonMember(links["member"], "dave")
    for member in (bob, dave):
        member.wait_for(
            lambda e: isinstance(e, EpochStarted) and len(e.members) == 4, "a four-member epoch"
        )
    expect(alice.locator("#members li")).to_have_count(4)
    expect(carol.locator("#members li")).to_have_count(4)
    code = bob.member.safety_code
    assert code is not None
    assert dave.member.safety_code == code
    expect(alice.locator("#safety-code")).to_have_text(code)
    expect(carol.locator("#safety-code")).to_have_text(code)
    # 60 digits, shown as three lines of four 5-digit groups to compare line by line
    for page in (alice, carol):
        assert page.locator("#safety-code").inner_text() == "\n".join(safety_code_lines(code))
    _send(alice, "hello from alice")
    _send(carol, "hello from carol")
    bob.do(lambda m: m.send_text("hello from bob"))
    dave.do(lambda m: m.send_text("hello from dave"))
    for page in (alice, carol):
        for text in ("bob", "dave", "alice", "carol"):
            expect(page.locator("#messages")).to_contain_text(f"hello from {text}")
    for member in (bob, dave):
        for text in ("alice", "carol"):
            member.wait_for(
                lambda e, t=text: isinstance(e, MessageReceived) and e.text == f"hello from {t}",
                f"{text}'s message",
            )
    expect(alice.locator(".message.own.pending")).to_have_count(0)
    screenshot(alice, "room-chat-desktop-light")
    screenshot(carol, "room-chat-phone-dark")
    bob.close()
    dave.close()


def test_a_room_made_in_python_is_joined_in_the_browser(
    contexts: Any, room_server: RoomServer
) -> None:
    new = _python_room(room_server, name="From the terminal")
    creator = PythonMember(new.creator_link.text(), "erin")
    creator.wait_for(lambda e: isinstance(e, EpochStarted), "the founding epoch")
    context, _ = contexts()
    page = context.new_page()
    _join(page, new.member_link.text(), "frank")
    _state(page, "room")
    expect(page.locator("#room-title")).to_have_text("From the terminal")
    creator.wait_for(
        lambda e: isinstance(e, EpochStarted) and len(e.members) == 2, "frank's arrival"
    )
    expect(page.locator("#safety-code")).to_have_text(creator.member.safety_code or "")
    creator.do(lambda m: m.send_text("welcome frank"))
    expect(page.locator("#messages")).to_contain_text("welcome frank")
    creator.close()


def test_knock_mode_a_browser_admits_one_python_joiner_and_refuses_another(
    contexts: Any, room_server: RoomServer
) -> None:
    context, _ = contexts()
    page = context.new_page()
    links = _create_in_browser(page, room_server, name="Knock", knock=True)
    _join(page, links["creator"], "gina")
    _state(page, "room")
    welcome = PythonMember(links["member"], "hal")
    expect(page.locator("#knocks li")).to_have_count(1)
    screenshot(page, "room-knock-desktop")
    page.get_by_role("button", name="Admit hal").click()
    welcome.wait_for(lambda e: isinstance(e, EpochStarted), "admission")
    expect(page.locator("#members li")).to_have_count(2)
    intruder = PythonMember(links["member"], "ivan")
    expect(page.locator("#knocks li")).to_have_count(1)
    page.get_by_role("button", name="Refuse ivan").click()
    intruder.wait_for(
        lambda e: isinstance(e, RelayError) and e.code == "not_admitted", "the refusal"
    )
    assert intruder.member.state is MemberState.CLOSED
    assert not any(isinstance(e, EpochStarted) for e in intruder.events)
    welcome.close()
    intruder.close()


def test_a_used_invite_is_refused_with_a_clear_page(contexts: Any, room_server: RoomServer) -> None:
    new = _python_room(room_server, invites=1)
    creator = PythonMember(new.creator_link.text(), "jo")
    creator.wait_for(lambda e: isinstance(e, EpochStarted), "the founding epoch")
    invitee = PythonMember(new.invite_links[0].text(), "kim")
    invitee.wait_for(lambda e: isinstance(e, EpochStarted), "the invitee's epoch")
    context, guard = contexts()
    guard.allow_http_error(403)
    page = context.new_page()
    _join(page, new.invite_links[0].text(), "lee")
    _state(page, "refused")
    expect(page.locator("#refused-message")).to_contain_text("already been used")
    screenshot(page, "room-invite-used-desktop")
    creator.close()
    invitee.close()


_STORAGE = """
async () => {
  const dbs = indexedDB.databases ? await indexedDB.databases() : [];
  const registrations = await navigator.serviceWorker.getRegistrations();
  return {
    indexedDB: dbs.map((db) => db.name),
    localStorage: localStorage.length,
    sessionStorage: sessionStorage.length,
    caches: await caches.keys(),
    serviceWorkers: registrations.length,
  };
}
"""


def test_panic_leaves_no_trace_and_the_others_see_the_leave(
    contexts: Any, room_server: RoomServer
) -> None:
    new = _python_room(room_server)
    creator = PythonMember(new.creator_link.text(), "max")
    creator.wait_for(lambda e: isinstance(e, EpochStarted), "the founding epoch")
    context, _ = contexts()
    page = context.new_page()
    _join(page, new.member_link.text(), "nia")
    _state(page, "room")
    creator.wait_for(lambda e: isinstance(e, EpochStarted) and len(e.members) == 2, "nia")
    # Something another page of this origin might have left behind.
    page.evaluate(
        """async () => {
          localStorage.setItem("x", "1");
          sessionStorage.setItem("y", "2");
          await caches.open("c");
          await new Promise((resolve) => {
            const request = indexedDB.open("leftover");
            request.onsuccess = () => { request.result.close(); resolve(); };
          });
        }"""
    )
    page.get_by_role("button", name="Panic").click()
    _state(page, "wiped")
    assert page.evaluate(_STORAGE) == {
        "indexedDB": [],
        "localStorage": 0,
        "sessionStorage": 0,
        "caches": [],
        "serviceWorkers": 0,
    }
    assert page.locator("#messages li").count() == 0
    creator.wait_for(lambda e: isinstance(e, EpochStarted) and len(e.members) == 1, "nia's leave")
    screenshot(page, "room-wiped-desktop")
    creator.close()


def test_the_room_page_carries_the_csp_and_explains_itself_without_javascript(
    contexts: Any, room_server: RoomServer
) -> None:
    response = httpx.get(f"{room_server.url}/r/AAECAwQFBgcICQoLDA0ODw", timeout=10)
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    context, _ = contexts(java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{room_server.url}/r/AAECAwQFBgcICQoLDA0ODw#x")
    expect(page.get_by_role("heading", name="This room needs JavaScript")).to_be_visible()
    screenshot(page, "room-no-javascript-desktop")


def test_a_thousand_messages_stay_fast(contexts: Any, room_server: RoomServer) -> None:
    new = _python_room(room_server)
    creator = PythonMember(new.creator_link.text(), "olga")
    creator.wait_for(lambda e: isinstance(e, EpochStarted), "the founding epoch")
    context, _ = contexts()
    page = context.new_page()
    _join(page, new.member_link.text(), "pat")
    _state(page, "room")
    creator.wait_for(lambda e: isinstance(e, EpochStarted) and len(e.members) == 2, "pat")

    def burst(member: RoomMember, first: int) -> None:
        for number in range(first, first + 40):
            member.send_text(f"message {number}")

    started = time.monotonic()
    # The relay allows 50 frames a second per connection (burst 100): 40 a second it is.
    for first in range(0, 1000, 40):
        creator.do(lambda m, f=first: burst(m, f))
        threading.Event().wait(1)
    expect(page.locator("#messages .message")).to_have_count(1000, timeout=120_000)
    elapsed = time.monotonic() - started
    typing = time.monotonic()
    _send(page, "still quick")
    expect(page.locator(".message.own")).to_have_count(1)
    assert time.monotonic() - typing < 2, "sending after 1,000 messages is slow"
    assert elapsed < 90, f"1,000 messages took {elapsed:.1f} s"
    creator.close()


def test_rooms_work_with_webassembly_disabled(
    safer_browser: Browser, room_server: RoomServer
) -> None:
    """Tor Browser's "Safer" level turns the JIT and WebAssembly off; joining without Extra
    Lock uses neither. The V8 flag the brief names, --noexpose_wasm, is gone from Debian's
    Chromium 156 (an unknown flag voids the whole --js-flags); --jitless removes the
    WebAssembly object, which the test checks. (Extra Lock at this level: the test below.)"""
    context = safer_browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(TIMEOUT_MS)
    guard = Guard(room_server.url)
    guard.watch(context)
    page = context.new_page()
    links = _create_in_browser(page, room_server, name="No wasm")
    assert page.evaluate("typeof WebAssembly") == "undefined"
    _join(page, links["creator"], "quinn")
    _state(page, "room")
    other = PythonMember(links["member"], "rae")
    other.wait_for(lambda e: isinstance(e, EpochStarted) and len(e.members) == 2, "rae")
    _send(page, "no wasm needed")
    other.wait_for(
        lambda e: isinstance(e, MessageReceived) and e.text == "no wasm needed", "the text"
    )
    other.do(lambda m: m.send_text("indeed"))
    expect(page.locator("#messages")).to_contain_text("indeed")
    other.close()
    context.close()
    guard.check()


@pytest.mark.parametrize(
    ("size", "scheme"),
    [("desktop", "light"), ("desktop", "dark"), ("phone", "light"), ("phone", "dark")],
)
def test_each_state_at_each_size_and_scheme_and_the_creator_ends_the_room(
    contexts: Any, room_server: RoomServer, size: str, scheme: str
) -> None:
    viewport = DESKTOP if size == "desktop" else PHONE
    context, _ = contexts(viewport=viewport, color_scheme=scheme)
    page = context.new_page()

    def shot(state: str) -> None:
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{state} scrolls sideways at {size} size"
        screenshot(page, f"room-{state}-{size}-{scheme}")

    page.goto(f"{room_server.url}/rooms")
    _state(page, "compose")
    shot("create")
    links = _create_in_browser(page, room_server, name="States", invites=2)
    shot("create-done")
    page.goto(links["creator"])
    _state(page, "ready")
    shot("ready")
    page.get_by_role("button", name="Join").click()
    _state(page, "room")
    guest = PythonMember(links["member"], "sam")
    guest.wait_for(lambda e: isinstance(e, EpochStarted) and len(e.members) == 2, "sam")
    guest.do(lambda m: m.send_text("a message from sam"))
    _send(page, "a message from the creator")
    expect(page.locator("#messages")).to_contain_text("a message from sam")
    shot("chat")
    page.get_by_role("button", name="End room").click()
    expect(page.get_by_role("button", name="Keep it open")).to_be_focused()
    shot("end-confirm")
    page.get_by_role("button", name="Yes, end it").click()
    _state(page, "ended")
    shot("ended")
    # The guest leaves on "closing" (publishing its keys); the relay then closes it.
    guest.wait_for(
        lambda e: type(e).__name__ in ("RoomClosing", "RoomEnded") and e.reason == "creator",
        "the end of the room",
    )
    guest.close()


def test_keyboard_only_join_send_and_panic(contexts: Any, room_server: RoomServer) -> None:
    new = _python_room(room_server)
    creator = PythonMember(new.creator_link.text(), "tess")
    creator.wait_for(lambda e: isinstance(e, EpochStarted), "the founding epoch")
    context, _ = contexts()
    page = context.new_page()
    page.goto(new.member_link.text())
    _state(page, "ready")
    expect(page.get_by_label("Your name in this room")).to_be_focused()
    page.keyboard.type("uma")
    page.keyboard.press("Enter")
    _state(page, "room")
    expect(page.get_by_label("Message", exact=True)).to_be_focused()
    page.keyboard.type("typed only")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    page.keyboard.press("Enter")
    creator.wait_for(
        lambda e: isinstance(e, MessageReceived) and e.text == "typed only\nsecond line",
        "the typed message",
    )
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Send")).to_be_focused()
    # Escape twice within a second: the panic key.
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")
    _state(page, "wiped")
    creator.wait_for(lambda e: isinstance(e, EpochStarted) and len(e.members) == 1, "uma's leave")
    creator.close()


def test_a_browser_without_ed25519_is_told_so_and_nothing_is_sent(
    contexts: Any, room_server: RoomServer
) -> None:
    """As in a browser whose WebCrypto lacks Ed25519 (Firefox before 129, Tor Browser 14):
    a clear page naming it, and no fallback."""
    new = _python_room(room_server)
    context, guard = contexts()
    context.add_init_script(
        """
        if (globalThis.crypto?.subtle) {
          const original = crypto.subtle.generateKey.bind(crypto.subtle);
          crypto.subtle.generateKey = (algorithm, ...rest) =>
            (algorithm?.name ?? algorithm) === "Ed25519"
              ? Promise.reject(new DOMException("Unrecognized name.", "NotSupportedError"))
              : original(algorithm, ...rest);
        }
        """
    )
    page = context.new_page()
    page.goto(new.member_link.text())
    _state(page, "unsupported")
    expect(page.locator("#missing-algorithms")).to_have_text("Ed25519")
    assert page.evaluate("location.hash") == ""
    assert not [r for r in guard.requests if "/api/" in r]
    screenshot(page, "room-unsupported-desktop")


@pytest.mark.parametrize("browser", SECURITY_LEVELS, indirect=True)
def test_extra_lock_keeps_only_a_sealed_record_and_a_reload_asks_for_the_passphrase(
    request: pytest.FixtureRequest, contexts: Any, room_server: RoomServer
) -> None:
    """At the "safer" level one full-cost Argon2id runs without WebAssembly (45-90 s each):
    the right passphrase's, in a reloaded page at that level holding the record. Joining and
    the wrong passphrase happen in the standard browser (what follows the key is the same
    code at both levels; envelope vectors pin the plain engine's bytes)."""
    is_safer = security_level(request) == "safer"
    standard: Browser | None = request.getfixturevalue("standard_browser") if is_safer else None
    new = _python_room(room_server, name="Locked")
    creator = PythonMember(new.creator_link.text(), "vic")
    creator.wait_for(lambda e: isinstance(e, EpochStarted), "the founding epoch")
    context, guard = contexts(using=standard)
    page = context.new_page()
    page.goto(new.member_link.text())
    _state(page, "ready")
    assert page.evaluate("localStorage.length") == 0
    page.get_by_label("Your name in this room").fill("wendy")
    page.get_by_role("checkbox", name="Extra Lock").check()
    page.get_by_label("Passphrase for Extra Lock").fill("correct horse battery")
    page.get_by_role("button", name="Join").click()
    _state(page, "room")
    creator.wait_for(lambda e: isinstance(e, EpochStarted) and len(e.members) == 2, "wendy")
    stored = page.evaluate("JSON.stringify(Object.entries(localStorage))")
    assert page.evaluate("localStorage.length") == 1
    for plaintext in (new.creation.room_id, "wendy", new.member_link.text().split("#")[1]):
        assert plaintext not in stored
    page.reload()
    _state(page, "locked")
    screenshot(page, "room-locked-desktop")
    before = len(guard.requests)
    page.get_by_label("Passphrase", exact=True).fill("wrong horse battery")
    page.get_by_role("button", name="Open and join").click()
    expect(page.locator("#unlock-error")).to_contain_text("does not open")
    assert not [r for r in guard.requests[before:] if "/api/" in r]
    _state(page, "locked")
    assert page.evaluate("localStorage.length") == 1
    if is_safer:
        # The same record, reloaded in a page at this level.
        record = page.evaluate("name => localStorage.getItem(name)", LOCK_STORAGE_KEY)
        address = page.url
        context.close()
        safer_context, _ = contexts()
        page = safer_context.new_page()
        page.goto(address)
        page.evaluate(
            "([name, value]) => localStorage.setItem(name, value)", [LOCK_STORAGE_KEY, record]
        )
        page.reload()
        _state(page, "locked")
    page.get_by_label("Passphrase", exact=True).fill("correct horse battery")
    page.get_by_role("button", name="Open and join").click()
    if is_safer:
        expect(page.locator("#unlock-progress")).to_contain_text("% done")
    _state(page, "room")
    expect(page.locator("#room-title")).to_have_text("Locked")
    creator.wait_for(
        lambda e: isinstance(e, EpochStarted) and len(e.members) == 2 and e.epoch >= 4,
        "wendy back",
    )
    expect(page.locator("#safety-code")).to_have_text(creator.member.safety_code or "")
    # Resuming after a reload is a new arrival: the relay saw the old connection leave.
    assert [e for e in creator.events if type(e).__name__ == "MemberLeft"]
    page.get_by_role("button", name="Leave").click()
    _state(page, "left")
    assert page.evaluate("localStorage.length") == 0
    creator.close()


# -- Extra Lock: the idle lock, the make-a-room page, reloads ---------------------------------

PASSPHRASE = "correct horse battery"
# Heap snapshot nodes (type, name) that hold a member's keys: our classes' objects and
# Blink's CryptoKey objects. None may be left in the page while it is locked.
_KEY_HOLDERS = {
    ("object", "RoomMember"),
    ("object", "EpochChains"),
    ("object", "MemberKeys"),
    ("native", "CryptoKey"),
}


def _heap(page: Page) -> tuple[Counter[str], list[str]]:
    """After a forced garbage collection: how many objects of each `_KEY_HOLDERS` class the
    page's JavaScript heap holds, and every string in it (Chromium's heap snapshot)."""
    cdp = page.context.new_cdp_session(page)
    chunks: list[str] = []
    cdp.on("HeapProfiler.addHeapSnapshotChunk", lambda event: chunks.append(event["chunk"]))
    cdp.send("HeapProfiler.enable")
    cdp.send("HeapProfiler.collectGarbage")
    cdp.send("HeapProfiler.takeHeapSnapshot", {"reportProgress": False})
    cdp.detach()
    snapshot = json.loads("".join(chunks))
    meta = snapshot["snapshot"]["meta"]
    fields = meta["node_fields"]
    width, type_at, name_at = len(fields), fields.index("type"), fields.index("name")
    types, strings, nodes = meta["node_types"][0], snapshot["strings"], snapshot["nodes"]
    counts: Counter[str] = Counter()
    for at in range(0, len(nodes), width):
        name = strings[nodes[at + name_at]]
        if (types[nodes[at + type_at]], name) in _KEY_HOLDERS:
            counts[name] += 1
    return counts, strings


def _shots(page: Page, name: str) -> None:
    """Screenshots of the state shown at desktop and phone size, light and dark, with no
    sideways scrolling."""
    for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{name} scrolls sideways at {size} size"
            screenshot(page, f"room-{name}-{size}-{scheme}")
    page.set_viewport_size(DESKTOP)
    page.emulate_media(color_scheme="light")


def test_an_idle_extra_lock_page_drops_its_keys_and_the_passphrase_resumes_the_same_seat(
    contexts: Any, room_server: RoomServer
) -> None:
    new = _python_room(room_server, name="Quiet hours")
    creator = PythonMember(new.creator_link.text(), "yara")
    creator.wait_for(lambda e: isinstance(e, EpochStarted), "the founding epoch")
    context, _ = contexts()
    page = context.new_page()
    page.clock.install()
    page.goto(new.member_link.text())
    _state(page, "ready")
    page.get_by_label("Your name in this room").fill("zoe")
    page.get_by_role("checkbox", name="Extra Lock").check()
    page.get_by_label("Passphrase for Extra Lock").fill(PASSPHRASE)
    expect(page.get_by_label("Lock this page when unused for")).to_have_value("300")
    page.get_by_role("button", name="Join").click()
    _state(page, "room")
    joined = creator.wait_for(
        lambda e: isinstance(e, EpochStarted) and len(e.members) == 2, "zoe's arrival"
    )
    creator.do(lambda m: m.send_text("said before the lock"))
    expect(page.locator("#messages")).to_contain_text("said before the lock")
    _send(page, "typed before the lock")
    creator.wait_for(
        lambda e: isinstance(e, MessageReceived) and e.text == "typed before the lock", "zoe's"
    )
    expect(page.locator(".message.own.pending")).to_have_count(0)
    page.get_by_label("Message", exact=True).fill("an unsent draft")
    code = _safety(page)
    assert code == creator.member.safety_code
    holders = _heap(page)[0]
    assert holders["RoomMember"] == 1
    assert holders["CryptoKey"] >= 3, holders  # the X25519, member-auth and metadata keys

    # Four idle minutes leave it open; a key press starts the count again.
    page.clock.fast_forward("04:00")
    _state(page, "room")
    page.keyboard.press("Shift")
    page.clock.fast_forward("04:00")
    _state(page, "room")
    page.clock.fast_forward("01:01")
    _state(page, "idle-locked")
    expect(page.get_by_label("Extra Lock passphrase")).to_be_focused()

    # Locked: no plaintext in the page, no key-holding object in its heap.
    assert page.locator("#messages li").count() == 0
    assert page.locator("#members li").count() == 0
    html = page.content()
    for plaintext in (
        "said before the lock",
        "typed before the lock",
        "an unsent draft",
        "yara",
        "zoe",
        "Quiet hours",
        code,
    ):
        assert plaintext not in html, plaintext
    assert page.title() == "Atopos · Room"
    holders, strings = _heap(page)
    assert holders == Counter(), holders
    assert not [text for text in strings if "said before the lock" in text]
    _shots(page, "idle-locked")

    # What comes meanwhile waits unread; a wrong passphrase opens nothing.
    creator.do(lambda m: m.send_text("said while locked"))
    creator.wait_for(
        lambda e: isinstance(e, MessageDelivered) and e.counter == 1, "the relay's receipt"
    )
    page.get_by_label("Extra Lock passphrase").fill("wrong horse battery")
    page.get_by_role("button", name="Unlock").click()
    expect(page.locator("#idle-unlock-error")).to_contain_text("does not open")
    _state(page, "idle-locked")
    assert page.locator("#messages li").count() == 0
    assert "said while locked" not in page.content()
    assert _heap(page)[0] == Counter()
    screenshot(page, "room-idle-locked-wrong-desktop")

    # The right one: the same seat, the conversation, the draft, and what waited.
    page.get_by_label("Extra Lock passphrase").fill(PASSPHRASE)
    page.get_by_role("button", name="Unlock").click()
    _state(page, "room")
    for text in ("said before the lock", "typed before the lock", "said while locked"):
        expect(page.locator("#messages")).to_contain_text(text)
    expect(page.get_by_label("Message", exact=True)).to_have_value("an unsent draft")
    expect(page.locator("#room-title")).to_have_text("Quiet hours")
    expect(page.locator("#members li")).to_have_count(2)
    expect(page.locator("#safety-code")).to_have_text(code)
    _send(page, "typed after the unlock")
    creator.wait_for(
        lambda e: isinstance(e, MessageReceived) and e.text == "typed after the unlock",
        "a message sealed with the resumed keys",
    )
    creator.do(lambda m: m.send_text("said after the unlock"))
    expect(page.locator("#messages")).to_contain_text("said after the unlock")
    # Nobody left or joined: the relay kept the seat through the lock.
    assert not [e for e in creator.events if type(e).__name__ == "MemberLeft"]
    assert creator.member.epoch == joined.epoch
    assert creator.member.safety_code == code
    creator.close()


def test_the_room_ended_while_the_page_was_locked_shows_after_the_unlock(
    contexts: Any, room_server: RoomServer
) -> None:
    new = _python_room(room_server, name="Short")
    creator = PythonMember(new.creator_link.text(), "ada")
    creator.wait_for(lambda e: isinstance(e, EpochStarted), "the founding epoch")
    context, _ = contexts()
    page = context.new_page()
    page.clock.install()
    page.goto(new.member_link.text())
    _state(page, "ready")
    page.get_by_role("checkbox", name="Extra Lock").check()
    page.get_by_label("Passphrase for Extra Lock").fill(PASSPHRASE)
    page.get_by_label("Lock this page when unused for").select_option("60")
    page.get_by_role("button", name="Join").click()
    _state(page, "room")
    creator.wait_for(lambda e: isinstance(e, EpochStarted) and len(e.members) == 2, "arrival")
    page.clock.fast_forward("01:01")
    _state(page, "idle-locked")
    creator.do(lambda m: m.end())
    # The relay says "closing", waits 5 s, says "ended" and closes: all while locked.
    expect(page.locator("#idle-lock-status")).to_contain_text(
        "closed while the page was locked", timeout=TIMEOUT_MS
    )
    _state(page, "idle-locked")
    page.get_by_label("Extra Lock passphrase").fill(PASSPHRASE)
    page.get_by_role("button", name="Unlock").click()
    _state(page, "ended")
    expect(page.locator("#ended-message")).to_contain_text("Its creator ended it")
    assert page.evaluate("localStorage.length") == 0
    creator.close()


def test_extra_lock_on_the_make_a_room_page_seals_the_creator_link_and_opening_asks_for_it(
    contexts: Any, room_server: RoomServer
) -> None:
    context, guard = contexts()
    page = context.new_page()
    page.goto(f"{room_server.url}/rooms")
    _state(page, "compose")
    page.get_by_label("Room name").fill("Sealed plans")
    page.get_by_role("checkbox", name="Extra Lock").check()
    page.get_by_label("Your name in this room").fill("abelard of the sealed plans")
    page.get_by_role("button", name="Make the room").click()
    expect(page.locator("#room-error")).to_contain_text("at least 8 characters")
    assert not [r for r in guard.requests if "/api/" in r]
    page.get_by_label("Passphrase for Extra Lock").fill(PASSPHRASE)
    _shots(page, "create-extra-lock")
    page.get_by_role("button", name="Make the room").click()
    _state(page, "done")
    expect(page.locator("#extra-lock-note")).to_contain_text("Extra Lock is on")
    creator_link = page.locator("#creator-link").text_content() or ""
    member_link = page.locator("#member-link").text_content() or ""
    room_page, fragment = creator_link.split("#")
    stored = page.evaluate("JSON.stringify(Object.entries(localStorage))")
    assert page.evaluate("localStorage.length") == 1
    for plaintext in (
        fragment,
        *fragment.split("."),
        room_page.rsplit("/", 1)[1],
        "abelard of the sealed plans",
    ):
        assert plaintext not in stored
    assert page.get_by_role("link", name="Open the room").get_attribute("href") == room_page
    _shots(page, "create-done-extra-lock")
    page.get_by_role("link", name="Open the room").click()
    _state(page, "locked")
    before = len(guard.requests)
    page.get_by_label("Passphrase", exact=True).fill("wrong horse battery")
    page.get_by_role("button", name="Open and join").click()
    expect(page.locator("#unlock-error")).to_contain_text("does not open")
    assert not [r for r in guard.requests[before:] if "/api/" in r]
    page.get_by_label("Passphrase", exact=True).fill(PASSPHRASE)
    page.get_by_role("button", name="Open and join").click()
    _state(page, "room")
    expect(page.locator("#room-title")).to_have_text("Sealed plans")
    expect(page.locator("#members li")).to_have_text(["abelard of the sealed plans (you)"])
    expect(page.get_by_role("button", name="End room")).to_be_visible()
    guest = PythonMember(member_link, "bea")
    guest.wait_for(lambda e: isinstance(e, EpochStarted) and len(e.members) == 2, "bea")
    expect(page.locator("#safety-code")).to_have_text(guest.member.safety_code or "")
    guest.close()


def test_without_extra_lock_nothing_is_stored_and_a_reload_opens_nothing(
    contexts: Any, room_server: RoomServer
) -> None:
    new = _python_room(room_server)
    creator = PythonMember(new.creator_link.text(), "cy")
    creator.wait_for(lambda e: isinstance(e, EpochStarted), "the founding epoch")
    context, guard = contexts()
    page = context.new_page()
    _join(page, new.member_link.text(), "dee")
    _state(page, "room")
    creator.wait_for(lambda e: isinstance(e, EpochStarted) and len(e.members) == 2, "dee")
    empty = {
        "indexedDB": [],
        "localStorage": 0,
        "sessionStorage": 0,
        "caches": [],
        "serviceWorkers": 0,
    }
    assert page.evaluate(_STORAGE) == empty
    before = len(guard.requests)
    page.reload()
    _state(page, "broken")
    assert page.evaluate(_STORAGE) == empty
    assert not [r for r in guard.requests[before:] if "/api/" in r]
    # The reload dropped the connection: to the room, dee left.
    creator.wait_for(lambda e: isinstance(e, EpochStarted) and len(e.members) == 1, "dee gone")
    creator.close()


def test_a_page_waiting_to_be_admitted_locks_and_comes_in_after_the_unlock(
    contexts: Any, room_server: RoomServer
) -> None:
    new = _python_room(room_server, name="Knock first", knock=True)
    creator = PythonMember(new.creator_link.text(), "gil")
    creator.wait_for(lambda e: isinstance(e, EpochStarted), "the founding epoch")
    context, _ = contexts()
    page = context.new_page()
    page.clock.install()
    page.goto(new.member_link.text())
    _state(page, "ready")
    page.get_by_label("Your name in this room").fill("hana")
    page.get_by_role("checkbox", name="Extra Lock").check()
    page.get_by_label("Passphrase for Extra Lock").fill(PASSPHRASE)
    page.get_by_label("Lock this page when unused for").select_option("60")
    page.get_by_role("button", name="Join").click()
    expect(page.locator("#joining-message")).to_contain_text("lets you in")
    knock = creator.wait_for(lambda e: type(e).__name__ == "JoinRequested", "hana's knock")
    page.clock.fast_forward("01:01")
    _state(page, "idle-locked")
    assert _heap(page)[0] == Counter()
    # Admitted while locked: the commit that adds hana waits unread.
    creator.do(lambda m: m.admit(knock.index))
    added = creator.wait_for(
        lambda e: isinstance(e, EpochStarted) and len(e.members) == 2, "hana's admission"
    )
    _state(page, "idle-locked")
    page.get_by_label("Extra Lock passphrase").fill(PASSPHRASE)
    page.get_by_role("button", name="Unlock").click()
    _state(page, "room")
    expect(page.locator("#room-title")).to_have_text("Knock first")
    expect(page.locator("#safety-code")).to_have_text(added.safety_code)
    _send(page, "thanks for letting me in")
    creator.wait_for(
        lambda e: isinstance(e, MessageReceived) and e.text == "thanks for letting me in",
        "hana's first message",
    )
    creator.close()


# Holds every PKCS#8 import (the private keys RoomMember.resume imports) until the test lets
# them go: the real WebCrypto call, only later, so a test can act in the middle of an unlock.
_HOLD_PRIVATE_KEY_IMPORTS = """
() => {
  const subtle = crypto.subtle;
  const importKey = subtle.importKey.bind(subtle);
  let release;
  window.heldImports = 0;
  window.releaseImports = new Promise((resolve) => { release = resolve; });
  window.letImportsGo = () => release();
  subtle.importKey = async (format, ...rest) => {
    if (format === "pkcs8") {
      window.heldImports += 1;
      await window.releaseImports;
    }
    return importKey(format, ...rest);
  };
}
"""


def test_panic_in_the_middle_of_an_unlock_wins_and_leaves_nothing(
    contexts: Any, room_server: RoomServer
) -> None:
    """Panic while the idle lock's unlock is still making the member again: the page stays
    wiped, the resumed member does not come back, and the others see the leave."""
    new = _python_room(room_server, name="Interrupted")
    creator = PythonMember(new.creator_link.text(), "ivy")
    creator.wait_for(lambda e: isinstance(e, EpochStarted), "the founding epoch")
    context, _ = contexts()
    page = context.new_page()
    page.clock.install()
    page.goto(new.member_link.text())
    _state(page, "ready")
    page.get_by_label("Your name in this room").fill("jo")
    page.get_by_role("checkbox", name="Extra Lock").check()
    page.get_by_label("Passphrase for Extra Lock").fill(PASSPHRASE)
    page.get_by_label("Lock this page when unused for").select_option("60")
    page.get_by_role("button", name="Join").click()
    _state(page, "room")
    creator.wait_for(lambda e: isinstance(e, EpochStarted) and len(e.members) == 2, "arrival")
    creator.do(lambda m: m.send_text("said before the lock"))
    expect(page.locator("#messages")).to_contain_text("said before the lock")
    page.clock.fast_forward("01:01")
    _state(page, "idle-locked")
    expect(page.locator("#idle-unlock-button")).to_be_enabled()

    page.evaluate(_HOLD_PRIVATE_KEY_IMPORTS)
    page.get_by_label("Extra Lock passphrase").fill(PASSPHRASE)
    page.get_by_role("button", name="Unlock").click()
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while page.evaluate("() => window.heldImports") == 0:
        assert time.monotonic() < deadline, "the unlock never reached RoomMember.resume"
        time.sleep(0.05)
    page.get_by_role("button", name="Panic").click()
    _state(page, "wiped")
    page.evaluate("() => window.letImportsGo()")
    # The unlock has run to its end (its button comes back) and changed nothing.
    expect(page.locator("#idle-unlock-button")).to_be_enabled()
    page.clock.run_for(1000)
    _state(page, "wiped")
    assert page.locator("#messages li").count() == 0
    assert "said before the lock" not in page.content()
    assert page.evaluate(_STORAGE)["localStorage"] == 0
    assert _heap(page)[0] == Counter()
    creator.wait_for(lambda e: type(e).__name__ == "MemberLeft", "jo's leave")
    creator.close()


# Holds every AES-GCM key import (Extra Lock's key, made once Argon2id is done) until the
# test lets them go: the real WebCrypto call, only later.
_HOLD_AES_KEY_IMPORTS = """
() => {
  const subtle = crypto.subtle;
  const importKey = subtle.importKey.bind(subtle);
  let release;
  window.heldImports = 0;
  window.doneImports = 0;
  window.releaseImports = new Promise((resolve) => { release = resolve; });
  window.letImportsGo = () => release();
  subtle.importKey = async (format, raw, algorithm, ...rest) => {
    if (algorithm === "AES-GCM") {
      window.heldImports += 1;
      await window.releaseImports;
    }
    const key = await importKey(format, raw, algorithm, ...rest);
    window.doneImports += 1;
    return key;
  };
}
"""


def test_cancel_while_extra_lock_is_made_keeps_nothing_and_joins_nothing(
    contexts: Any, room_server: RoomServer
) -> None:
    """Cancel (Panic) pressed on "Locking the room under your passphrase…": once Argon2id
    is done, the page neither stores the sealed record nor joins the room."""
    new = _python_room(room_server, name="Never mind")
    creator = PythonMember(new.creator_link.text(), "kai")
    creator.wait_for(lambda e: isinstance(e, EpochStarted), "the founding epoch")
    context, guard = contexts()
    page = context.new_page()
    page.goto(new.member_link.text())
    _state(page, "ready")
    sockets: list[str] = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    page.evaluate(_HOLD_AES_KEY_IMPORTS)
    page.get_by_label("Your name in this room").fill("lu")
    page.get_by_role("checkbox", name="Extra Lock").check()
    page.get_by_label("Passphrase for Extra Lock").fill(PASSPHRASE)
    page.get_by_role("button", name="Join").click()
    _state(page, "joining")
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while page.evaluate("() => window.heldImports") == 0:
        assert time.monotonic() < deadline, "Argon2id never finished"
        time.sleep(0.05)
    page.get_by_role("button", name="Cancel").click()
    _state(page, "wiped")
    page.evaluate("() => window.letImportsGo()")
    while page.evaluate("() => window.doneImports") == 0:
        assert time.monotonic() < deadline, "the held import never ran"
        time.sleep(0.05)
    # A few turns of the event loop: what the join handler does next has happened.
    page.evaluate("() => new Promise((resolve) => setTimeout(resolve, 500))")
    _state(page, "wiped")
    assert page.evaluate(_STORAGE)["localStorage"] == 0
    assert _heap(page)[0] == Counter()
    assert sockets == []
    assert not [r for r in guard.requests if "/api/" in r]
    assert not [e for e in creator.events if isinstance(e, EpochStarted) and len(e.members) > 1]
    creator.close()


def test_the_idle_lock_counts_on_a_monotonic_clock_not_the_wall_clock(
    contexts: Any, room_server: RoomServer
) -> None:
    """The computer's clock set back an hour (by hand, or a time sync) does not hold the idle
    lock off for that hour: a minute of no input still locks."""
    new = _python_room(room_server, name="Clock")
    creator = PythonMember(new.creator_link.text(), "max")
    creator.wait_for(lambda e: isinstance(e, EpochStarted), "the founding epoch")
    context, _ = contexts()
    page = context.new_page()
    page.clock.install()
    page.goto(new.member_link.text())
    _state(page, "ready")
    page.get_by_role("checkbox", name="Extra Lock").check()
    page.get_by_label("Passphrase for Extra Lock").fill(PASSPHRASE)
    page.get_by_label("Lock this page when unused for").select_option("60")
    page.get_by_role("button", name="Join").click()
    _state(page, "room")
    creator.wait_for(lambda e: isinstance(e, EpochStarted) and len(e.members) == 2, "arrival")
    wall = page.evaluate("() => Date.now()")
    page.clock.set_system_time(wall / 1000 - 3600)  # a number is in seconds here
    assert page.evaluate("() => Date.now()") < wall - 3_500_000
    page.clock.fast_forward("01:01")
    _state(page, "idle-locked")
    creator.close()
