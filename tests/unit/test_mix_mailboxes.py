"""A gateway's mailboxes (mixnet/mailboxes.py): only opened mailboxes take mail, caps on
mailboxes and waiting mail, and the TTL, on a manual clock."""

from __future__ import annotations

import asyncio

from tests.servers import ManualClock

from atopos.mixnet.mailboxes import Mailboxes

BOX = b"B" * 32
OTHER = b"O" * 32


def _mailboxes(clock: ManualClock) -> Mailboxes:
    return Mailboxes(clock, max_mailboxes=2, max_messages=3, ttl=60.0)


def test_mail_for_a_mailbox_nobody_opened_is_discarded() -> None:
    boxes = _mailboxes(ManualClock())
    assert not boxes.store(BOX, b"mail")
    assert len(boxes) == 0


def test_mail_waits_for_its_client_up_to_the_cap_and_the_ttl() -> None:
    async def scenario() -> None:
        clock = ManualClock()
        boxes = _mailboxes(clock)
        first: asyncio.Queue[bytes] = asyncio.Queue(10)
        assert boxes.attach(BOX, first)
        assert boxes.store(BOX, b"pushed")
        assert first.get_nowait() == b"pushed"
        boxes.detach(BOX, first)
        assert [boxes.store(BOX, b"%d" % i) for i in range(4)] == [True, True, True, False]
        clock.advance(30)
        second: asyncio.Queue[bytes] = asyncio.Queue(10)
        assert boxes.attach(BOX, second)
        assert [second.get_nowait() for _ in range(3)] == [b"0", b"1", b"2"]
        boxes.detach(BOX, second)
        boxes.store(BOX, b"late")
        clock.advance(61)
        boxes.sweep()
        assert len(boxes) == 0  # the mail expired, then the empty mailbox

    asyncio.run(scenario())


def test_a_gateway_holds_a_bounded_number_of_mailboxes() -> None:
    async def scenario() -> None:
        boxes = _mailboxes(ManualClock())
        queues = [asyncio.Queue[bytes](1) for _ in range(3)]
        assert boxes.attach(BOX, queues[0])
        assert boxes.attach(OTHER, queues[1])
        assert not boxes.attach(b"T" * 32, queues[2])

    asyncio.run(scenario())
