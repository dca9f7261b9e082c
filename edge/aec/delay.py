"""Speaker -> microphone delay estimation by GCC-PHAT on the far end and the mic.

Every ``hop`` samples the last ``window`` mic samples are cross-correlated with the far end
over lags ``0..max_delay``. The cross-spectrum is averaged over the updates in which the far
end was playing, then whitened (PHAT), so the correlation peak is sharp whatever the voice's
spectrum. A delay is adopted once the same peak (within ``tolerance``) stands out in
``confirmations`` consecutive updates; a change needs four times as many (~0.3 s of
agreeing updates), so a burst of double talk does not move it: searching up to 500 ms, twice
as many let one of 60 rooms jump to a 370 ms lag and back during double talk (the filter then
doubts itself and suppresses hard, which cost the user's words).

The same correlation peak, located to a fraction of a sample, also tracks clock drift: when
the speaker and the microphone run on different clocks (a USB microphone and an HDMI
speaker), the delay slides by a fixed number of samples per second, and a linear filter left
alone loses ~15 dB of ERLE within seconds (at 100 ppm, 1.6 samples a second).
:class:`DelayTrack` fits a line through the recent sub-sample peaks and reports its slope
once it is clearly not zero, and recognizes a jump of a few samples (which the whole-sample
estimate, with its tolerance, does not see); the linear stage slides its filter along.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from shared.audio import PROCESSING_RATE, Samples

_MIN_POINTS = 8  # measurements before the track fits a line


class DelayTrack:
    """The delay to a fraction of a sample over time: how fast it slides, and when it jumps.

    ``rate`` (samples of delay per sample of time) is the slope of a line fitted over the
    last ``span_s`` seconds of measurements, outliers dropped (a reflection or the user's
    voice can win the correlation now and then). It stays 0 until the points span
    ``min_span_s`` and the slope is at least ``min_ppm`` and ``significance`` times its own
    standard error: a steady clock reads 0.0-0.2 ppm (standard error < 0.1 ppm) over 8 s of
    speech, a 100 ppm drift within 0.5 ppm.

    A jump (the device's buffering changed: an underrun, a resync) shows as ``jump_points``
    measurements in a row (readings further off than ``max_jump`` skipped) that agree with
    each other to a sample but lie ``min_jump`` to ``max_jump`` samples off the line;
    :meth:`add` returns its size, and the line moves with it (the clocks did not change, so
    neither does ``rate``). Readings further off are stray peaks here (in one room a run of
    them stood 300 ms off during double talk); a real change that large is the whole-sample
    estimate's to confirm. Measurements older than ``span_s`` are forgotten even while every
    new one is skipped, so a line that no longer fits is gone after ``span_s``.
    """

    def __init__(self, span_s: float = 8.0, min_span_s: float = 0.6, min_ppm: float = 10.0,
                 significance: float = 8.0, min_jump: float = 2.0, max_jump: float = 16.0,
                 jump_points: int = 6, rate: int = PROCESSING_RATE) -> None:
        self._span, self._min_span = span_s * rate, min_span_s * rate
        self._min_slope, self._significance = min_ppm * 1e-6, significance
        self._min_jump, self._max_jump, self._jump_points = min_jump, max_jump, jump_points
        self._points: deque[tuple[float, float]] = deque()
        self._off_line: deque[tuple[float, float]] = deque(maxlen=jump_points)
        self.rate = 0.0

    def reset(self) -> None:
        """Forget the measurements (the echo path changed beyond recognition)."""
        self._points.clear()
        self._off_line.clear()
        self.rate = 0.0

    def add(self, at: float, lag: float) -> float:
        """One delay measurement ``lag`` (samples) at time ``at`` (samples); returns the size
        of a jump this measurement confirmed (0.0 if none)."""
        jump = 0.0
        while self._points and self._points[0][0] < at - self._span:
            self._points.popleft()
        start = self._intercept()
        off = 0.0 if start is None else lag - (start + self.rate * at)
        if abs(off) > self._max_jump:
            return 0.0  # a stray peak
        if start is None or abs(off) < self._min_jump:
            self._points.append((at, lag))
        else:
            self._off_line.append((at, lag))
            run = list(self._off_line)
            offs = [x - (start + self.rate * t) for t, x in run]
            if len(offs) < self._jump_points or np.ptp(offs) > 1.0:
                return 0.0  # a stray peak, or not yet sure
            if self._one_line(run):  # the delay slides faster than measured yet: not a jump
                self._points.extend(run)
            else:
                jump = float(np.median(offs))
                self._points = deque((t, x + jump) for t, x in self._points)
                self._points.extend(run)
        self._off_line.clear()
        self.rate = self._fit()
        return jump

    def predict(self, at: float) -> float | None:
        """The delay expected at ``at`` (None before there are enough measurements)."""
        start = self._intercept()
        return None if start is None else start + self.rate * at

    def _intercept(self) -> float | None:
        if len(self._points) < _MIN_POINTS:
            return None
        t, lag = np.array(self._points).T
        return float(np.median(lag - self.rate * t))

    def _one_line(self, run: list[tuple[float, float]]) -> bool:
        """Whether one straight line runs through the measurements and ``run`` (within half
        the smallest jump): drift not measured yet (the first second at 300 ppm) rather
        than a step."""
        t, lag = np.array([*self._points, *run]).T
        slope, intercept, _ = _robust_line(t, lag)
        new_t, new_lag = np.array(run).T
        return float(np.mean(np.abs(new_lag - (slope * new_t + intercept)))) < self._min_jump / 2

    def _fit(self) -> float:
        if len(self._points) < _MIN_POINTS:
            return 0.0
        t, lag = np.array(self._points).T
        if np.ptp(t) < self._min_span:
            return 0.0
        slope, intercept, keep = _robust_line(t, lag)
        tk, rk = t[keep], lag[keep] - (slope * t[keep] + intercept)
        spread = float(np.sum((tk - tk.mean()) ** 2))
        if keep.sum() < _MIN_POINTS or np.ptp(tk) < self._min_span or spread <= 0.0:
            return 0.0
        error = float(np.sqrt(np.sum(rk**2) / (tk.size - 2) / spread))
        if abs(slope) < max(self._min_slope, self._significance * error):
            return 0.0
        return float(slope)


def _robust_line(t: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Least-squares line, fitted again without what lay far off it: (slope, intercept,
    which points were kept)."""
    keep = np.ones(t.size, dtype=bool)
    for _ in range(2):
        slope, intercept = np.polyfit(t[keep], y[keep], 1)
        off = np.abs(y - (slope * t + intercept))
        keep = off <= max(1.0, 4.0 * float(np.median(off[keep])))
    return float(slope), float(intercept), keep


# Two whole-sample readings this close (samples) are the same delay.
DELAY_TOLERANCE = 16


class DelayEstimator:
    """Streaming GCC-PHAT delay estimator (pure numpy, no I/O).

    Feed it with :meth:`push` (far and mic chunks of equal length, same timeline); read
    :attr:`delay_samples` (``None`` until a delay has been found); :attr:`drift` (how fast
    the delay slides) and :attr:`jump` (a jump confirmed by the last push) from the
    sub-sample :class:`DelayTrack`; :attr:`slid` says whether the last change of
    ``delay_samples`` is one that track had already followed.
    """

    def __init__(self, max_delay_ms: float = 500.0, window: int = 2048, hop: int = 640,
                 smoothing: float = 0.35, min_peak_ratio: float = 12.0,
                 confirmations: int = 2, tolerance: int = DELAY_TOLERANCE,
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
        # A jump up to just past the whole-sample tolerance is the track's (no gap between).
        self._track = DelayTrack(max_jump=tolerance + 1.0, rate=rate)
        self.reset()

    def reset(self) -> None:
        self._forget_sound()
        self.delay_samples: int | None = None
        self.peak_ratio = 0.0
        self._now = 0
        self._track.reset()
        self.slid = False
        self.jump = 0.0

    def _forget_sound(self) -> None:
        span = self.window + self.max_lag
        self._far = np.zeros(span, dtype=np.float64)
        self._mic = np.zeros(self.window, dtype=np.float64)
        self._since_update = 0
        self._far_heard = 0
        self._cross = np.zeros(self._fft // 2 + 1, dtype=np.complex128)
        self._updates = 0
        self._candidate: int | None = None
        self._votes = 0

    def rewind(self, back: int, delay_samples: int | None) -> None:
        """Go on over audio from ``back`` samples before now (a recording's second pass),
        where the delay was ``delay_samples``: the sound heard so far is later audio and
        goes; the drift line measured so far stays (it runs through the earlier audio too),
        so finding the delay of then is no change, while a jump is followed as live."""
        self._forget_sound()
        self._now -= back
        self.delay_samples = delay_samples

    @property
    def drift(self) -> float:
        """Samples of delay gained per sample of time (0.0 while the clocks agree)."""
        return self._track.rate

    def push(self, far: Samples, mic: Samples) -> bool:
        """Add one chunk of each; returns True when the delay estimate changed."""
        n = len(far)
        self._now += n
        self.jump = 0.0
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
        lag, subsample_lag, ratio = self._peak()
        self.peak_ratio = ratio
        if ratio < self._min_ratio:
            return False
        self.jump = self._track.add(float(self._now), subsample_lag)
        return self._vote(lag)

    def _peak(self) -> tuple[int, float, float]:
        """Best lag, the same to a fraction of a sample (parabola through the peak), and how
        far its peak stands above the typical correlation level."""
        spec = np.where(self._band, self._cross / (np.abs(self._cross) + 1e-20), 0.0)
        corr = np.fft.irfft(spec, self._fft)[: self.max_lag + 1]
        # corr[j] pairs far[j + n] with mic[n]: the mic lags the far end by max_lag - j.
        lags = corr[::-1]
        best = int(np.argmax(lags))
        subsample = float(best)
        if 0 < best < lags.size - 1:
            before, peak, after = lags[best - 1: best + 2]
            curvature = before - 2.0 * peak + after
            if curvature < 0.0:
                subsample += 0.5 * float(before - after) / float(curvature)
        typical = float(np.median(np.abs(lags))) + 1e-12
        return best, subsample, float(lags[best]) / typical

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
        predicted = self._track.predict(float(self._now))
        self.slid = predicted is not None and abs(lag - predicted) <= self._tolerance
        if not self.slid:
            self._track.reset()  # a change it missed: those measurements belong to another path
        self.delay_samples = lag
        return True
