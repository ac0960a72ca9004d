"""One room across two `atopos serve` nodes on one room Redis (issue 22), with browsers in it:
a page served by node A and a Python member on node A, a page and a Python member on node B,
messages both ways and one safety code everywhere; then node B is killed with SIGKILL, and
the page on A sees B's members leave, a new epoch start, and keeps talking with the member
on A. Real redis-server and real nodes on loopback; Debian's Chromium.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from atopos.protocol.room_events import EpochStarted, MemberLeft, MessageReceived
from tests.browser.conftest import DESKTOP
from tests.browser.harness import TIMEOUT_MS, Guard, screenshot
from tests.browser.test_room_pages import PythonMember, _join, _python_room, _send, _state
from tests.redis_servers import RedisServer
from tests.servers import ServerProcess

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Nodes a and b on one room Redis of this test alone (persistence off)."""
    room_redis = RedisServer.ephemeral(tmp_path / "room-redis").start()
    nodes = [
        ServerProcess(
            data_dir=tmp_path / name,
            log_path=tmp_path / f"{name}.log",
            env={"ATOPOS_ROOM_REDIS_URL": room_redis.url},
        )
        for name in ("a", "b")
    ]
    try:
        for node in nodes:
            node.start()
        yield nodes[0], nodes[1]
    finally:
        for node in nodes:
            node.stop()
        room_redis.stop()


@contextlib.contextmanager
def _page_on(browser: Browser, origin: str) -> Iterator[tuple[Page, Guard]]:
    """A page in a fresh context guarded against requests outside `origin`."""
    context: BrowserContext = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(TIMEOUT_MS)
    guard = Guard(origin)
    guard.watch(context)
    try:
        yield context.new_page(), guard
    finally:
        context.close()


def _wait_epoch(member: PythonMember, size: int, what: str) -> Any:
    return member.wait_for(lambda e: isinstance(e, EpochStarted) and len(e.members) == size, what)


def test_browsers_on_two_nodes_share_a_room_and_a_killed_node_only_loses_its_members(
    browser: Browser, two_nodes: tuple[ServerProcess, ServerProcess]
) -> None:
    node_a, node_b = two_nodes
    new = _python_room(node_a, name="Two nodes")
    on_a, on_b = new.member_link.text(), new.member_link.text().replace(node_a.url, node_b.url)
    creator = PythonMember(new.creator_link.text(), "ann")  # on node a
    _wait_epoch(creator, 1, "the founding epoch")
    with _page_on(browser, node_a.url) as (page_a, guard_a):
        with _page_on(browser, node_b.url) as (page_b, guard_b):
            _join(page_a, on_a, "alice")
            _state(page_a, "room")
            _wait_epoch(creator, 2, "alice's arrival")
            bob = PythonMember(on_b, "bob")  # on node b
            _wait_epoch(creator, 3, "bob's arrival")
            _join(page_b, on_b, "bea")
            _state(page_b, "room")
            joined = _wait_epoch(creator, 4, "bea's arrival")
            _wait_epoch(bob, 4, "a four-member epoch at bob")
            code = creator.member.safety_code
            assert code is not None
            assert bob.member.safety_code == code
            for page in (page_a, page_b):
                expect(page.locator("#members li")).to_have_count(4)
                expect(page.locator("#safety-code")).to_have_text(code)

            _send(page_a, "alice on node a")
            _send(page_b, "bea on node b")
            creator.do(lambda m: m.send_text("ann on node a"))
            bob.do(lambda m: m.send_text("bob on node b"))
            for page in (page_a, page_b):
                for text in ("alice on node a", "bea on node b", "ann on node a", "bob on node b"):
                    expect(page.locator("#messages")).to_contain_text(text)
            for member in (creator, bob):
                for text in ("alice on node a", "bea on node b"):
                    member.wait_for(
                        lambda e, t=text: isinstance(e, MessageReceived) and e.text == t, text
                    )
            assert "bob on node b" in creator.texts()
            assert "ann on node a" in bob.texts()
            expect(page_a.locator(".message.own.pending")).to_have_count(0)
            screenshot(page_a, "room-two-nodes-desktop")

            node_b.kill9()
            # The page on b lost its connection, and says so (its console may tell of the
            # broken WebSocket: that is the point of this step).
            _state(page_b, "failed")
            assert guard_b.page_errors == []
            assert guard_b.foreign_requests == []
        # On a: bob and bea leave (the relay closes a dead node's connections), a new epoch.
        creator.wait_for(
            lambda e: (
                isinstance(e, EpochStarted) and len(e.members) == 2 and e.epoch > joined.epoch
            ),
            "the epoch after node b died",
        )
        assert sum(isinstance(e, MemberLeft) for e in creator.events) == 2
        expect(page_a.locator("#members li")).to_have_count(2)
        expect(page_a.locator("#messages")).to_contain_text("bob left.")
        expect(page_a.locator("#messages")).to_contain_text("bea left.")
        after = creator.member.safety_code
        assert after is not None
        expect(page_a.locator("#safety-code")).to_have_text(after)
        _send(page_a, "still here on a")
        creator.do(lambda m: m.send_text("me too"))
        creator.wait_for(
            lambda e: isinstance(e, MessageReceived) and e.text == "still here on a", "alice"
        )
        expect(page_a.locator("#messages")).to_contain_text("me too")
        expect(page_a.locator(".message.own.pending")).to_have_count(0)
        assert creator.errors == []
        assert bob.errors == []
        bob.close()
        creator.close()
        guard_a.check()
