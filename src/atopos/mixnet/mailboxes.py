"""A gateway's mailboxes: where a client's mail waits until it connects (bounded, with a TTL).

A mailbox exists only once its client has opened it; mail for any other address (drop cover
among it) is discarded. Each mailbox holds at most `max_messages` frames for at most `ttl`
seconds; an attached client gets its frames pushed as they arrive.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from atopos.clock import Clock

__all__ = ["Mailboxes"]


@dataclass
class _Mailbox:
    touched_at: float
    waiting: deque[tuple[float, bytes]] = field(default_factory=deque)
    attached: asyncio.Queue[bytes] | None = None


class Mailboxes:
    def __init__(self, clock: Clock, *, max_mailboxes: int, max_messages: int, ttl: float) -> None:
        self._clock = clock
        self._boxes: dict[bytes, _Mailbox] = {}
        self._max_mailboxes = max_mailboxes
        self._max_messages = max_messages
        self._ttl = ttl

    def __len__(self) -> int:
        return len(self._boxes)

    def sweep(self) -> None:
        """Drop expired mail, and mailboxes nobody attached to within the TTL."""
        now = self._clock.monotonic()
        for mailbox_id, box in list(self._boxes.items()):
            while box.waiting and now - box.waiting[0][0] >= self._ttl:
                box.waiting.popleft()
            if box.attached is None and not box.waiting and now - box.touched_at >= self._ttl:
                del self._boxes[mailbox_id]

    def attach(self, mailbox_id: bytes, outbox: asyncio.Queue[bytes]) -> bool:
        """Deliver this mailbox's mail to `outbox` from now on; False when the gateway holds
        as many mailboxes as it may."""
        self.sweep()
        box = self._boxes.get(mailbox_id)
        if box is None:
            if len(self._boxes) >= self._max_mailboxes:
                return False
            box = self._boxes[mailbox_id] = _Mailbox(self._clock.monotonic())
        box.attached = outbox
        box.touched_at = self._clock.monotonic()
        while box.waiting and not outbox.full():
            outbox.put_nowait(box.waiting.popleft()[1])
        return True

    def detach(self, mailbox_id: bytes, outbox: asyncio.Queue[bytes]) -> None:
        box = self._boxes.get(mailbox_id)
        if box is not None and box.attached is outbox:
            box.attached = None
            box.touched_at = self._clock.monotonic()

    def store(self, mailbox_id: bytes, frame: bytes) -> bool:
        """Keep or push one mail frame; False when it was discarded (no such mailbox, full)."""
        box = self._boxes.get(mailbox_id)
        if box is None:
            return False
        if box.attached is not None and not box.attached.full():
            box.attached.put_nowait(frame)
            return True
        if len(box.waiting) >= self._max_messages:
            return False
        box.waiting.append((self._clock.monotonic(), frame))
        return True
