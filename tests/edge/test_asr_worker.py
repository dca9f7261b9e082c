"""The recognizer thread: one decode at a time, the newest waiting request first, and a
pause's final never pushed out by a partial."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from edge.asr_worker import NewestFirstWorker


def gated_worker() -> tuple[NewestFirstWorker[np.ndarray, int], threading.Event]:
    gate = threading.Event()

    def decode(audio: np.ndarray) -> int:
        gate.wait(5)
        return int(audio.size)

    return NewestFirstWorker(decode), gate


def audio(n: int) -> np.ndarray:
    return np.zeros(n, dtype=np.float32)


async def test_a_newer_request_replaces_the_waiting_one() -> None:
    worker, gate = gated_worker()
    running = worker.submit(audio(1), 1)
    older = worker.submit(audio(2), 2)
    newer = worker.submit(audio(3), 3)
    gate.set()
    assert (await running).result == 1 and (await newer).result == 3
    assert older.cancelled()
    worker.close()


async def test_a_partial_does_not_replace_a_waiting_final() -> None:
    worker, gate = gated_worker()
    running = worker.submit(audio(1), 1)
    final = worker.submit(audio(2), 2, final=True)
    partial = worker.submit(audio(3), 3)
    gate.set()
    await running
    assert partial.cancelled()
    assert (await final).result == 2
    await asyncio.sleep(0)
    assert not worker.busy
    worker.close()


async def test_a_later_final_replaces_a_waiting_final() -> None:
    worker, gate = gated_worker()
    running = worker.submit(audio(1), 1)
    final = worker.submit(audio(2), 2, final=True)
    later = worker.submit(audio(4), 4, final=True)  # a later pause wins
    gate.set()
    await running
    assert final.cancelled() and (await later).result == 4
    worker.close()
