"""The lean queue and event behave like asyncio's for the calls uvicorn makes on them."""

from __future__ import annotations

import asyncio
import contextlib

from atopos.server.lean_asyncio import LeanEvent, LeanQueue


def test_the_queue_is_first_in_first_out_and_get_waits_for_an_item() -> None:
    async def scenario() -> None:
        queue: LeanQueue[int] = LeanQueue()
        assert queue.empty()
        assert queue.qsize() == 0
        for n in range(3):
            queue.put_nowait(n)
        assert queue.qsize() == 3
        assert [await queue.get() for _ in range(3)] == [0, 1, 2]
        waiting = asyncio.create_task(queue.get())
        await asyncio.sleep(0)
        assert not waiting.done()
        queue.put_nowait(7)
        assert await asyncio.wait_for(waiting, 1) == 7
        assert queue.empty()

    asyncio.run(scenario())


def test_a_cancelled_getter_loses_no_item() -> None:
    async def scenario() -> None:
        queue: LeanQueue[str] = LeanQueue()
        first = asyncio.create_task(queue.get())
        second = asyncio.create_task(queue.get())
        await asyncio.sleep(0)
        queue.put_nowait("x")  # wakes the first getter...
        first.cancel()  # ...which is cancelled before it runs
        with contextlib.suppress(asyncio.CancelledError):
            await first
        assert await asyncio.wait_for(second, 1) == "x"
        assert queue.empty()

    asyncio.run(scenario())


def test_the_event_wakes_every_waiter_and_clear_makes_wait_block_again() -> None:
    async def scenario() -> None:
        event = LeanEvent()
        assert not event.is_set()
        waiters = [asyncio.create_task(event.wait()) for _ in range(3)]
        await asyncio.sleep(0)
        assert not any(w.done() for w in waiters)
        event.set()
        assert await asyncio.wait_for(asyncio.gather(*waiters), 1) == [True] * 3
        assert await event.wait() is True  # set: returns at once
        event.clear()
        blocked = asyncio.create_task(event.wait())
        await asyncio.sleep(0.01)
        assert not blocked.done()
        blocked.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await blocked
        event.set()  # a cancelled waiter is skipped
        assert event.is_set()

    asyncio.run(scenario())
