"""An unbounded queue and an event for asyncio that cost a few hundred bytes less each.

asyncio's Queue makes three deques and an Event (one more deque) up front, about 2.4 KiB,
and an Event about 0.8 KiB: per WebSocket that is a fifth of an idle room member's cost
(docs/performance.md, "Rooms"). These hold a list of waiters made only when someone waits,
with the same behaviour for the calls uvicorn's WebSocket protocol makes: `put_nowait`,
`get`, `empty` and `qsize`; `set`, `clear`, `is_set` and `wait`. A cancelled waiter is
skipped, as in asyncio.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

__all__ = ["LeanEvent", "LeanQueue"]

_T = TypeVar("_T")


def _wake_one(waiters: list[asyncio.Future[None]]) -> None:
    while waiters:
        waiter = waiters.pop(0)
        if not waiter.done():
            waiter.set_result(None)
            return


class LeanQueue(Generic[_T]):
    """First in, first out, unbounded; `get` waits for an item."""

    __slots__ = ("_getters", "_items")

    def __init__(self) -> None:
        self._items: list[_T] = []
        self._getters: list[asyncio.Future[None]] | None = None

    def put_nowait(self, item: _T) -> None:
        self._items.append(item)
        if self._getters:
            _wake_one(self._getters)

    async def get(self) -> _T:
        while not self._items:
            if self._getters is None:
                self._getters = []
            getters = self._getters
            getter = asyncio.get_running_loop().create_future()
            getters.append(getter)
            try:
                await getter
            except BaseException:
                if getter in getters:
                    getters.remove(getter)
                elif self._items:
                    _wake_one(getters)  # woken but cancelled: pass the item on
                raise
        return self._items.pop(0)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)


class LeanEvent:
    """A flag that tasks can wait for."""

    __slots__ = ("_is_set", "_waiters")

    def __init__(self) -> None:
        self._is_set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._is_set

    def set(self) -> None:
        if self._is_set:
            return
        self._is_set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._is_set = False

    async def wait(self) -> bool:
        if self._is_set:
            return True
        if self._waiters is None:
            self._waiters = []
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
        return True
