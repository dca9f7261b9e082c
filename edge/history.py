"""The recent cleaned mic audio, addressable by sample position on the mic timeline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.audio import PROCESSING_RATE, Samples


class AudioHistory:
    """A ring buffer of the last ``seconds`` of audio (bounded memory, O(1) append)."""

    def __init__(self, seconds: float = 60.0) -> None:
        self._buf = np.zeros(int(seconds * PROCESSING_RATE), dtype=np.float32)
        self._end = 0  # timeline position one past the newest sample

    @property
    def end(self) -> int:
        return self._end

    @property
    def start(self) -> int:
        return max(0, self._end - self._buf.size)

    def append(self, samples: Samples) -> None:
        n = samples.size
        if n >= self._buf.size:
            self._buf[:] = samples[-self._buf.size:]
        else:
            at = self._end % self._buf.size
            first = min(n, self._buf.size - at)
            self._buf[at: at + first] = samples[:first]
            self._buf[: n - first] = samples[first:]
        self._end += n

    def slice(self, start: int, end: int) -> Samples:
        """Samples in [start, end) clipped to what is still held."""
        start, end = max(start, self.start), min(end, self._end)
        if end <= start:
            return np.zeros(0, dtype=np.float32)
        a, b = start % self._buf.size, end % self._buf.size
        if a < b or end - start == 0:
            return self._buf[a:b].copy()
        return np.concatenate([self._buf[a:], self._buf[:b]])


@dataclass(frozen=True, slots=True)
class Stretch:
    """Audio that begins at ``start`` on the timeline."""

    start: int
    audio: Samples
