"""The Kalman echo filter with a fast shadow beside it, chosen per frequency bin.

The main filter (:class:`~edge.aec.filter.KalmanEchoFilter`) treats whatever its echo model
cannot explain as the user's voice and slows down, which keeps it from learning the user
during double talk. That same caution keeps it wrong for a few hundred ms when the echo it
has learned does not fit a new far-end sound: on voiced speech it fits the sustained
harmonics it has heard with a combination of partitions that does not hold at the next pitch,
then takes the misfit for observation noise. (In the worst test rooms its linear ERLE stays
10-20 dB below what the true room response truncated to the filter would give.)

The shadow is the same filter with a faster-moving echo path (lower ``transition``) and an
observation-noise estimate that follows slowly, so it keeps adapting through such a misfit.
Per bin, the echo estimate comes from the shadow wherever its smoothed error has been
lower than the main filter's by a margin; elsewhere from the main filter. Both estimates are
made before either filter learns from the frame, so neither can take the user's voice of
that frame for echo (choosing after the update cancelled more echo, but also more of the
user). Double talk pulls the shadow off: once its error is several times the main filter's
it starts again from the main filter's coefficients. The main filter is never changed by the
shadow, and its uncertainty still gives the predicted residual echo the suppressor uses.
(WebRTC AEC3 pairs a refined and a coarse filter in the same spirit, choosing between their
whole outputs.)
"""

from __future__ import annotations

import numpy as np

from edge.aec.filter import FilterOutput, KalmanEchoFilter


class ShadowedEchoFilter:
    """Main Kalman filter plus shadow; same interface as :class:`KalmanEchoFilter`.

    ``smoothing``: of the per-bin error powers the choice compares (~3 frames); ``margin``:
    the shadow's smoothed error must be below this share of the main filter's; ``reset_ratio``:
    a shadow whose frame error exceeds the main filter's this many times starts again from it;
    ``shadow_transition`` / ``shadow_noise_smoothing``: the shadow's
    :class:`KalmanEchoFilter` parameters (the main filter keeps the defaults).
    """

    def __init__(self, frame: int = 160, partitions: int = 24, smoothing: float = 0.7,
                 margin: float = 0.85, reset_ratio: float = 4.0, shadow_transition: float = 0.998,
                 shadow_noise_smoothing: float = 0.99) -> None:
        self.frame, self.partitions = frame, partitions
        self.main = KalmanEchoFilter(frame, partitions)
        self.shadow = KalmanEchoFilter(frame, partitions, transition=shadow_transition,
                                       noise_smoothing=shadow_noise_smoothing)
        self._smoothing, self._margin, self._reset_ratio = smoothing, margin, reset_ratio
        self.reset()

    def reset(self) -> None:
        self.main.reset()
        self.shadow.reset()
        self._main_error = np.zeros(self.frame + 1)
        self._shadow_error = np.zeros(self.frame + 1)
        self.shadow_bins = np.zeros(self.frame + 1, dtype=bool)

    def shift(self, frames: int) -> None:
        self.main.shift(frames)
        self.shadow.shift(frames)

    def slide(self, samples: float) -> None:
        self.main.slide(samples)
        self.shadow.slide(samples)

    def doubt(self) -> None:
        self.main.doubt()
        self.shadow.doubt()

    @property
    def coefficients(self) -> np.ndarray:
        return self.main.coefficients

    @property
    def uncertainty(self) -> np.ndarray:
        return self.main.uncertainty

    def load(self, coefficients: np.ndarray, uncertainty: np.ndarray) -> None:
        """Both filters start from ``coefficients``, as sure of them as the main filter was
        (see :meth:`KalmanEchoFilter.load`). A shadow that took the coefficients with the
        prior's uncertainty would learn like a cold filter: over a restart's first double
        talk it learned the user's voice and won the bins where it cut it: the linear stage
        took 3-6 dB less echo off over that double talk than the filter it was loaded from
        (tests/edge/test_aec_memory.py), over 20 dB less in some 100 ms stretches of the
        bench rooms."""
        self.reset()
        self.main.load(coefficients, uncertainty)
        self.shadow.load(coefficients, uncertainty)

    def predict(self, mic: np.ndarray, spectra: np.ndarray) -> FilterOutput:
        """The main filter's echo estimate for one frame; neither filter learns from it."""
        return self.main.predict(mic, spectra)

    @property
    def coefficient_power(self) -> np.ndarray:
        """The main filter's (see :class:`KalmanEchoFilter`)."""
        return self.main.coefficient_power

    @property
    def residual_power(self) -> np.ndarray:
        """The main filter's predicted residual echo power (see :class:`KalmanEchoFilter`)."""
        return self.main.residual_power

    def process(self, mic: np.ndarray, spectra: np.ndarray, power: np.ndarray) -> FilterOutput:
        """Cancel one frame with both filters; the echo estimate is chosen per bin."""
        main = self.main.process(mic, spectra, power)
        fast = self.shadow.process(mic, spectra, power)
        a = self._smoothing
        self._main_error = a * self._main_error + (1 - a) * self.main.error_power
        self._shadow_error = a * self._shadow_error + (1 - a) * self.shadow.error_power
        if float(np.dot(fast.error, fast.error)) > self._reset_ratio * float(
                np.dot(main.error, main.error)):
            self.shadow.adopt(self.main)
        self.shadow_bins = self._shadow_error < self._margin * self._main_error
        if not self.shadow_bins.any():
            return main
        spectrum = np.where(self.shadow_bins, self.shadow.echo_spectrum, self.main.echo_spectrum)
        echo = np.fft.irfft(spectrum)[self.frame:]
        return FilterOutput(error=mic - echo, echo=echo)
