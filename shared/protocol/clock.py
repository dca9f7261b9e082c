"""Round-trip time and clock offset from ping/pong timestamps (NTP's arithmetic), pure."""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClockSample:
    """One ping/pong exchange: round trip and the peer's clock minus ours, in seconds."""

    rtt_s: float
    offset_s: float


class ClockEstimate:
    """Keeps the last ``size`` samples; ``rtt_s`` is their median, ``offset_s`` comes from the
    sample with the smallest round trip (the least queueing, hence the least skewed)."""

    def __init__(self, size: int = 32) -> None:
        self._samples: deque[ClockSample] = deque(maxlen=size)
        self.count = 0  # samples ever added

    def add(self, t0: float, t1: float, t2: float, t3: float) -> ClockSample:
        """Record an exchange: t0 ping sent, t1 received by the peer, t2 pong sent, t3 received."""
        sample = ClockSample(
            rtt_s=max(0.0, (t3 - t0) - (t2 - t1)),
            offset_s=((t1 - t0) + (t2 - t3)) / 2.0,
        )
        self._samples.append(sample)
        self.count += 1
        return sample

    @property
    def samples(self) -> tuple[ClockSample, ...]:
        """The samples kept, oldest first."""
        return tuple(self._samples)

    @property
    def rtt_s(self) -> float | None:
        """Median round trip in seconds, or None before the first pong."""
        if not self._samples:
            return None
        return statistics.median(s.rtt_s for s in self._samples)

    @property
    def offset_s(self) -> float | None:
        """Peer clock minus local clock in seconds, or None before the first pong."""
        if not self._samples:
            return None
        return min(self._samples, key=lambda s: s.rtt_s).offset_s
