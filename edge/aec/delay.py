"""Speaker -> microphone delay estimation by GCC-PHAT on the far end and the mic.

Every ``hop`` samples the last ``window`` mic samples are cross-correlated with the far end
over lags ``0..max_delay``. The cross-spectrum is averaged over the updates in which the far
end was playing, then whitened (PHAT), so the correlation peak is sharp whatever the voice's
spectrum. A delay is adopted once the same peak (within ``tolerance``) stands out in
``confirmations`` consecutive updates; a change needs four times as many (~0.3 s of
agreeing updates), so a burst of double talk does not move it: searching up to 500 ms, twice
as many let one of 60 rooms jump to a 370 ms lag and back during double talk (the filter then
doubts itself and suppresses hard, which cost the user's words).
"""

from __future__ import annotations

import numpy as np

from shared.audio import PROCESSING_RATE, Samples


class DelayEstimator:
    """Streaming GCC-PHAT delay estimator (pure numpy, no I/O).

    Feed it with :meth:`push` (far and mic chunks of equal length, same timeline); read
    :attr:`delay_samples` (``None`` until a delay has been found).
    """

    def __init__(self, max_delay_ms: float = 500.0, window: int = 2048, hop: int = 640,
                 smoothing: float = 0.35, min_peak_ratio: float = 12.0,
                 confirmations: int = 2, tolerance: int = 16,
                 band_hz: tuple[float, float] = (250.0, 6000.0),
                 rate: int = PROCESSING_RATE) -> None:
        self.max_lag = int(max_delay_ms * rate / 1000)
        self.window, self.hop = window, hop
        self._fft = 1 << int(np.ceil(np.log2(2 * window + self.max_lag)))
        self._smoothing = smoothing
        self._min_ratio = min_peak_ratio
        self._confirmations = confirmations
        self._tolerance = tolerance
        freqs = np.fft.rfftfreq(self._fft, 1 / rate)
        self._band = (freqs >= band_hz[0]) & (freqs <= band_hz[1])
        self.reset()

    def reset(self) -> None:
        span = self.window + self.max_lag
        self._far = np.zeros(span, dtype=np.float64)
        self._mic = np.zeros(self.window, dtype=np.float64)
        self._since_update = 0
        self._far_heard = 0
        self._cross = np.zeros(self._fft // 2 + 1, dtype=np.complex128)
        self._updates = 0
        self._candidate: int | None = None
        self._votes = 0
        self.delay_samples: int | None = None
        self.peak_ratio = 0.0

    def push(self, far: Samples, mic: Samples) -> bool:
        """Add one chunk of each; returns True when the delay estimate changed."""
        n = len(far)
        self._far = np.concatenate([self._far[n:], far])
        self._mic = np.concatenate([self._mic[n:], mic])
        if float(np.dot(far, far)) > 1e-7 * n:
            self._far_heard += n
        self._since_update += n
        if self._since_update < self.hop:
            return False
        self._since_update = 0
        return self._update()

    def _update(self) -> bool:
        far_recent = self._far[-self.window:]
        if float(np.mean(far_recent * far_recent)) < 1e-7:  # far end silent: nothing to learn
            return False
        if self._far_heard < self.window + self.max_lag // 2:
            # Right after the far end first starts, both windows hold a sound onset at their
            # end, which correlates at small lags whatever the delay: wait for the echo.
            return False
        f = np.fft.rfft(self._far, self._fft)
        m = np.fft.rfft(self._mic, self._fft)
        cross = f * np.conj(m)
        a = 1.0 if self._updates == 0 else self._smoothing
        self._cross += a * (cross - self._cross)
        self._updates += 1
        lag, ratio = self._peak()
        self.peak_ratio = ratio
        return self._vote(lag) if ratio >= self._min_ratio else False

    def _peak(self) -> tuple[int, float]:
        """Best lag and how far its peak stands above the typical correlation level."""
        spec = np.where(self._band, self._cross / (np.abs(self._cross) + 1e-20), 0.0)
        corr = np.fft.irfft(spec, self._fft)[: self.max_lag + 1]
        # corr[j] pairs far[j + n] with mic[n]: the mic lags the far end by max_lag - j.
        lags = corr[::-1]
        best = int(np.argmax(lags))
        typical = float(np.median(np.abs(lags))) + 1e-12
        return best, float(lags[best]) / typical

    def _vote(self, lag: int) -> bool:
        if self._candidate is not None and abs(lag - self._candidate) <= self._tolerance:
            self._votes += 1
        else:
            self._candidate, self._votes = lag, 1
        current = self.delay_samples
        # Moving an adopted delay needs more evidence than finding the first one: a burst of
        # double talk with a similar voice can briefly correlate at another lag.
        needed = self._confirmations if current is None else 4 * self._confirmations
        if self._votes < needed:
            return False
        if current is not None and abs(lag - current) <= self._tolerance:
            return False
        self.delay_samples = lag
        return True
