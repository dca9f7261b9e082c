"""Speech recognition off the event loop, newest request first.

The recognizer is blocking and not re-entrant, so one thread runs it (with whatever prepares
its input: see the pipeline's replayed echo cancellation). While it is busy,
at most one request waits: a newer request replaces the waiting one (its future is
cancelled), because only the newest audio matters for a partial or a speculative final;
but a partial never replaces a waiting final (the final is what the turn waits for).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

A = TypeVar("A")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Decoded(Generic[R]):
    """A recognizer result with what it covered and what it cost."""

    result: R
    upto_sample: int
    compute_s: float


class NewestFirstWorker(Generic[A, R]):
    """Runs ``fn(audio)`` in one worker thread; a newer waiting request supersedes an older.
    ``audio`` is whatever ``fn`` takes: samples, or what computes them."""

    def __init__(self, fn: Callable[[A], R]) -> None:
        self._fn = fn
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asr")
        self._busy = False
        self._waiting: tuple[A, int, asyncio.Future[Decoded[R]]] | None = None
        self._waiting_final = False

    @property
    def busy(self) -> bool:
        return self._busy

    def submit(self, audio: A, upto_sample: int,
               final: bool = False) -> asyncio.Future[Decoded[R]]:
        """Queue a decode of ``audio`` (which ends at ``upto_sample`` on the mic timeline);
        a ``final`` one is not superseded by a later partial (that one is cancelled)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Decoded[R]] = loop.create_future()
        if self._waiting is not None and self._waiting_final and not final:
            future.cancel()
            return future
        if self._waiting is not None:
            self._waiting[2].cancel()
        self._waiting, self._waiting_final = (audio, upto_sample, future), final
        if not self._busy:
            self._start_next(loop)
        return future

    def _start_next(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._waiting is None:
            self._busy = False
            return
        audio, upto, future = self._waiting
        self._waiting, self._waiting_final = None, False
        self._busy = True
        task = loop.run_in_executor(self._pool, self._timed, audio)

        def done(t: asyncio.Future[tuple[R, float]]) -> None:
            if not future.done():
                if t.exception() is not None:
                    future.set_exception(t.exception())  # type: ignore[arg-type]
                else:
                    result, cost = t.result()
                    future.set_result(Decoded(result, upto, cost))
            self._start_next(loop)

        task.add_done_callback(done)

    def _timed(self, audio: A) -> tuple[R, float]:
        t0 = time.perf_counter()
        result = self._fn(audio)
        return result, time.perf_counter() - t0

    def close(self) -> None:
        if self._waiting is not None:
            self._waiting[2].cancel()
            self._waiting, self._waiting_final = None, False
        self._pool.shutdown(wait=False, cancel_futures=True)
