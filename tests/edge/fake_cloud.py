"""A stand-in for the cloud tier that speaks the edge's link interface (``Uplink``).

It answers each ``transcript.final`` at once with a canned spoken reply (``tts.start``,
``response.text`` with sample offsets, 40 ms ``tts.chunk``s, ``tts.end``), so edge tests can
exercise playback, echo and barge-in without Ray or llama.cpp.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np

from shared import protocol as p
from shared.audio import PROCESSING_RATE, Samples, float_to_pcm16


class FakeCloud:
    def __init__(self, reply: Samples, reply_text: str = "one two three four five six") -> None:
        self.reply = np.asarray(reply, dtype=np.float32)
        self.reply_text = reply_text
        self.sent: list[p.Message] = []
        self._inbox: asyncio.Queue[p.Message] = asyncio.Queue()

    async def send(self, msg: p.Message) -> None:
        self.sent.append(msg)
        if isinstance(msg, p.TranscriptFinal):
            self._answer(msg.turn_id)

    def _answer(self, turn_id: int) -> None:
        put = self._inbox.put_nowait
        put(p.TtsStart(turn_id=turn_id, sample_rate=PROCESSING_RATE))
        words = self.reply_text.split()
        half = len(words) // 2
        put(p.ResponseText(turn_id=turn_id, delta=" ".join(words[:half]) + " "))
        put(p.ResponseText(turn_id=turn_id, delta=" ".join(words[half:]),
                           sample_offset=self.reply.size // 2))
        step = PROCESSING_RATE * 40 // 1000
        for i, at in enumerate(range(0, self.reply.size, step)):
            put(p.TtsChunk(turn_id=turn_id, chunk_index=i, sample_rate=PROCESSING_RATE,
                           sample_offset=at, payload=float_to_pcm16(self.reply[at:at + step])))
        put(p.TtsEnd(turn_id=turn_id, total_samples=self.reply.size))

    async def __aiter__(self) -> AsyncIterator[p.Message]:
        while True:
            yield await self._inbox.get()

    def of_type(self, cls: type[p.Message]) -> list[p.Message]:
        return [m for m in self.sent if isinstance(m, cls)]
