"""Waiting for a condition that callbacks (aiortc events) make true."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Changes:
    """``notify()`` from any callback on the loop; ``await wait_until(pred)`` re-checks ``pred``
    after each notification. Unlike asyncio.Condition, notifying needs no lock."""

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    def notify(self) -> None:
        """Wake every waiter so it re-checks its condition."""
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait_until(self, ready: Callable[[], bool]) -> None:
        """Return once ``ready()`` is true (checked now and after each notify)."""
        loop = asyncio.get_running_loop()
        while not ready():
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            await fut
