"""The speech service: clause -> PCM16 at the edge's sample rate, first clauses first.

A worker thread per synthesizer instance runs the syntheses (blocking, not re-entrant): the
first takes any clause, the others only a turn's first clause, which is ``URGENT`` and jumps the
queue; later clauses wait in arrival order. Cancelling a
request stops the synthesis before its next sentence (``should_continue``). Audio is resampled
from the voice's rate (22.05 kHz for piper) with soxr (``shared.audio``).
"""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import Sequence

from cloud.conversation.ports import SpeechAudio, SpeechRequest, SpeechSource
from cloud.engines.tts import SpeechSynthesizer
from cloud.engines.worker import NORMAL, URGENT, Job, Lane, StepWorker
from shared.audio import float_to_pcm16, resample


class _SpeakJob(Job):
    def __init__(self, voices: queue.SimpleQueue[SpeechSynthesizer], request: SpeechRequest,
                 loop: asyncio.AbstractEventLoop, future: asyncio.Future[SpeechAudio]) -> None:
        super().__init__(URGENT if request.first else NORMAL)
        self._voices = voices
        self._request = request
        self._loop = loop
        self._future = future
        self._received = time.perf_counter()
        self._result: SpeechAudio | None = None

    def step(self) -> bool:
        started = time.perf_counter()
        r = self._request
        voice = self._voices.get()  # one per worker thread: never blocks long
        try:
            audio = voice.synthesize(r.text, r.speed, lambda: not self.cancelled)
            audio = resample(audio, voice.sample_rate, r.sample_rate)
        finally:
            self._voices.put(voice)
        done = time.perf_counter()
        self._result = SpeechAudio(pcm16=float_to_pcm16(audio), sample_rate=r.sample_rate,
                                   synth_ms=(done - started) * 1000.0,
                                   queue_ms=(started - self._received) * 1000.0)
        return True

    def finished(self, error: BaseException | None) -> None:
        self._loop.call_soon_threadsafe(self._settle, error)

    def _settle(self, error: BaseException | None) -> None:
        if self._future.done():
            return
        if error is not None:
            self._future.set_exception(error)
        elif self._result is not None:
            self._future.set_result(self._result)
        else:
            self._future.cancel()


class SpeechService(SpeechSource):
    """Clause synthesis with a priority queue, off the event loop."""

    def __init__(self, synthesizers: SpeechSynthesizer | Sequence[SpeechSynthesizer],
                 name: str = "tts", lanes: tuple[Lane, ...] | None = None) -> None:
        """One lane (thread) per synthesizer; by default the first takes every clause."""
        voices = [synthesizers] if isinstance(synthesizers, SpeechSynthesizer) \
            else list(synthesizers)
        self.synthesizers = voices
        self._voices: queue.SimpleQueue[SpeechSynthesizer] = queue.SimpleQueue()
        for voice in voices:
            self._voices.put(voice)
        lanes = lanes or (Lane(),) + (Lane((URGENT,)),) * (len(voices) - 1)
        if len(lanes) != len(voices):
            raise ValueError("a speech service needs one lane per synthesizer")
        self._worker = StepWorker(name, lanes=lanes)

    def warm_up(self, sample_rate: int = 16000) -> None:
        """Pay first-use costs (first inference, the resampler) before the first request."""
        for voice in self.synthesizers:
            voice.warm_up()
            float_to_pcm16(resample(voice.synthesize("Hi."), voice.sample_rate, sample_rate))

    async def speak(self, request: SpeechRequest) -> SpeechAudio:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[SpeechAudio] = loop.create_future()
        job = _SpeakJob(self._voices, request, loop, future)
        self._worker.submit(job)
        try:
            return await future
        finally:
            if not future.done():
                job.cancel()
                self._worker.wake()

    def close(self) -> None:
        self._worker.stop()
