"""The numpy echo canceller: delay alignment, Kalman linear filter, residual suppression.

This is the whole canceller when livekit is not installed, and the linear front of the
livekit one (:class:`LinearEchoStage`).
"""

from __future__ import annotations

import numpy as np

from edge.aec.base import FRAME_SAMPLES, EchoCanceller, EchoSettings
from edge.aec.delay import DelayEstimator
from edge.aec.filter import FarEndSpectra, FilterOutput, KalmanEchoFilter
from edge.aec.reverb import LateReverb
from edge.aec.shadow import ShadowedEchoFilter
from edge.aec.suppressor import ResidualEchoSuppressor
from shared.audio import PROCESSING_RATE

# The filter starts this many frames before the estimated direct path (estimate error,
# the band-limited direct path's pre-ringing).
_LEAD_FRAMES = 2
# Under clock drift the filter slides along once the drift has moved the path this far (in
# samples): a twentieth of a sample is ~-25 dB of misfit at 2.5 kHz. Jumps slide it at once.
_SLIDE_STEP = 0.05
LOW_BAND_HZ = 200.0


class LinearEchoStage:
    """Speaker -> mic delay estimation and the linear (Kalman) echo filter.

    The filter reads the far end ``delay_frames`` back, chosen so the direct path falls in
    its third partition (see :meth:`_follow` for what happens when the estimate moves). A
    guard passes the mic through whenever subtracting the echo estimate would add sound.
    """

    def __init__(self, settings: EchoSettings = EchoSettings()) -> None:
        n = FRAME_SAMPLES
        self.settings = settings
        self.partitions = _LEAD_FRAMES + int(np.ceil(settings.tail_ms * PROCESSING_RATE / 1000 / n))
        longest_ms = max(settings.max_delay_ms, settings.delay_ms or 0.0)  # a hint beyond
        max_delay_frames = int(np.ceil(longest_ms * PROCESSING_RATE / 1000 / n))
        self._history = FarEndSpectra(n, max_delay_frames + self.partitions + 1)
        self._filter = (ShadowedEchoFilter(n, self.partitions) if settings.shadow_filter
                        else KalmanEchoFilter(n, self.partitions))
        self._estimator = (DelayEstimator(max_delay_ms=settings.max_delay_ms)
                           if settings.estimate_delay else None)
        self._low_bins = int(LOW_BAND_HZ * 2 * n / PROCESSING_RATE) + 1
        # Reverberation spreads the echo of a frame over the next ones (~RT60 0.6 s at most).
        self._low_weights = 0.9 ** np.arange(self.partitions)
        self._low_band_echo = np.zeros(self._low_bins)
        self._late = LateReverb(n + 1) if settings.late_reverb else None
        self.reset()

    def reset(self) -> None:
        self._history.reset()
        self._filter.reset()
        if self._late is not None:
            self._late.reset()
        if self._estimator is not None:
            self._estimator.reset()
        hint = self.settings.delay_ms
        self.delay_samples: int | None = (None if hint is None
                                          else round(hint * PROCESSING_RATE / 1000))
        self.delay_estimated = False
        self.delay_frames = self._frames_for(self.delay_samples)
        self._mic_level = self._err_level = 0.0
        self._unslid = 0.0  # how far (samples) the path moved that the filter has not followed

    @staticmethod
    def _frames_for(delay_samples: int | None) -> int:
        return 0 if delay_samples is None else max(0, delay_samples // FRAME_SAMPLES - _LEAD_FRAMES)

    def process(self, mic: np.ndarray, far: np.ndarray) -> FilterOutput:
        """One frame: update the delay estimate, then cancel the linear echo."""
        estimator = self._estimator
        if estimator is not None:
            sliding = self.settings.track_drift
            if estimator.push(far, mic):
                self._follow(estimator.delay_samples, sliding and estimator.slid)
            if sliding:
                self._unslid += estimator.drift * len(far) + estimator.jump
            if abs(self._unslid) >= _SLIDE_STEP:
                self._filter.slide(self._unslid)
                self._unslid = 0.0
        self._history.push(far)
        spectra, power = self._history.window(self.delay_frames, self.partitions)
        out = self._filter.process(mic, spectra, power)
        self._low_band_echo = 0.5 * (self._low_weights @ power[:, : self._low_bins])
        if self._late is not None:
            self._late.update(self._filter.coefficient_power, power[-1])
        return self._guard(mic, out)

    def _guard(self, mic: np.ndarray, out: FilterOutput) -> FilterOutput:
        """A right echo estimate can only make the mic quieter. When subtracting it makes the
        mic clearly louder (the echo path moved, e.g. the device's delay jumped, or the filter
        drifted during double talk), pass the mic through rather than add echo."""
        a = 0.3
        self._mic_level += a * (float(np.dot(mic, mic)) - self._mic_level)
        self._err_level += a * (float(np.dot(out.error, out.error)) - self._err_level)
        if self._err_level <= 2.0 * self._mic_level + 1e-9:
            return out
        return FilterOutput(error=mic, echo=np.zeros_like(mic))

    def _follow(self, delay_samples: int | None, slid: bool = False) -> None:
        """Re-align on a new delay estimate.

        The first estimate corrects where we read the far end (the room did not change), so
        the coefficients move with the read point; so does a change the filter has already
        slid along with (clock drift, or a jump the sub-sample track caught). Any other later
        change means the device's delay jumped (the room response moved along with it), so
        the coefficients stay where they are relative to the read point, but the filter is no
        longer sure of them.
        """
        frames = self._frames_for(delay_samples)
        if self.delay_estimated and not slid:
            self._filter.doubt()
        else:
            self._filter.shift(frames - self.delay_frames)
        self.delay_samples, self.delay_estimated = delay_samples, True
        self.delay_frames = frames

    @property
    def residual_power(self) -> np.ndarray:
        """Predicted echo power left in the last frame's error spectrum (per bin).

        The filter's own prediction, except below ``LOW_BAND_HZ``: there a voice's
        fundamental is an almost pure tone the filter learns poorly while believing it has,
        so the whole echo that far-end sound could make (path gain up to 0 dB) is assumed.
        That takes a few dB off the user's fundamental in double talk; dropping it cut the
        double-talk WER by 0.01-0.03 on 60 rooms but cost ~0.3 dB of ERLE in room 20, which
        then rendered below 25 dB in most test runs (and 1.2-1.7 dB of median ERLE): kept.
        """
        predicted = self._filter.residual_power.copy()
        low = predicted[: self._low_bins]
        np.maximum(low, self._low_band_echo, out=low)
        return predicted

    @property
    def late_power(self) -> np.ndarray | None:
        """Predicted echo beyond the filter's window, per bin (see :mod:`edge.aec.reverb`)."""
        return None if self._late is None else self._late.power


def residual_suppressor(settings: EchoSettings) -> ResidualEchoSuppressor:
    """The residual echo suppressor configured by ``settings`` (both implementations)."""
    return ResidualEchoSuppressor(
        FRAME_SAMPLES, overestimate=settings.suppression,
        floor_db=settings.suppression_floor_db, comfort_noise=settings.comfort_noise,
        nearend_dominance_db=settings.nearend_dominance_db,
        nearend_overestimate=settings.nearend_suppression,
        coherence_threshold=settings.echo_coherence_threshold,
        recognizer_overestimate=settings.asr_suppression,
        recognizer_floor_db=settings.asr_floor_db)


class NumpyEchoCanceller(EchoCanceller):
    """Linear stage + residual echo suppression, in numpy only (the fallback)."""

    name = "numpy"

    def __init__(self, settings: EchoSettings = EchoSettings()) -> None:
        super().__init__()
        self._linear = LinearEchoStage(settings)
        self._suppressor = residual_suppressor(settings)
        self.latency_samples = self._suppressor.latency_samples

    def _process(self, mic: np.ndarray, far: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        linear = self._linear.process(mic, far)
        return self._suppressor.process(linear.error, linear.echo, self._linear.residual_power,
                                        self._linear.late_power)

    def _reset(self) -> None:
        self._linear.reset()
        self._suppressor.reset()

    def _delay_samples(self) -> int | None:
        return self._linear.delay_samples

    def _delay_estimated(self) -> bool:
        return self._linear.delay_estimated
