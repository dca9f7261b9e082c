"""The numpy echo canceller: delay alignment, Kalman linear filter, residual suppression.

This is the whole canceller when livekit is not installed, and the linear front of the
livekit one (:class:`LinearEchoStage`).
"""

from __future__ import annotations

import numpy as np

from edge.aec.base import FRAME_SAMPLES, EchoCanceller, EchoSettings
from edge.aec.delay import DELAY_TOLERANCE, DelayEstimator
from edge.aec.filter import FarEndSpectra, FilterOutput, KalmanEchoFilter
from edge.aec.memory import EchoMemoryError, LearnedEchoPath
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
# The Kalman filter (transition 0.99999) predicts a median ~4 dB less residual echo than it
# leaves (speech band); the suppressor's margins were chosen when the prediction ran ~7 dB
# above it (transition 0.9995, which kept the filter noisier). Scaled up by ~11 dB they keep
# their meaning: unscaled, the clean output of the longest bench room (20, RT60 0.59 s) fell
# from 32 to 22 dB of ERLE; scaled once settled, 34 dB (numpy, far end alone, whole run).
# Only once the filter has settled: while it learns, the user talking over the echo must
# still stand out of the prediction (scaled from the start, or with the uncertainty scaled up
# to its prior, the early talkers of 60 saved rooms lost half their words from a cold start:
# WER 0.31 -> 0.52, their first sentence unheard by the VAD). The price: through double talk
# the filter's uncertainty grows, and scaled it hides the user from the suppressor's near-end
# test more often, so the clean output notches more of their voice (11 % of their loud cells
# in the tests' double talk, 5 % unscaled); the recognizer's copy has no gain.
PREDICTION_SCALE = 12.0
# ... and gradually, over this many frames of far end after settling (a dB-linear ramp): the
# filter is still converging then, and a step of 11 dB in its prediction hid a user talking
# at that moment (a quarter of a second of their words cut by more than 10 dB in the clean
# output, rooms 0 and 4 of the tests). Over a second, the clean ERLE of rooms 20, 32, 38 and
# 44 moved <= 0.5 dB; from a cold start, the saved rooms' users 0.3 s into the reply went
# 0.345 -> 0.321 WER (90 % paired interval [-0.047, -0.003]), those 1.5-4 s in 0.265 -> 0.278
# ([-0.007, +0.036]). A remembered path that took over is scaled in full at once.
_SCALE_RAMP_FRAMES = 100
# A remembered echo path proves itself by explaining the echo where it predicts one: it
# predicts (learning nothing, so it is judged on what it was), and of the cells (10 ms x 500
# Hz band) where its estimate is at least a quarter of the mic's energy, it must leave no more
# than _PROOF_DB of the mic in _PROOF_CELLS of them, and in at least _PROOF_SHARE of all.
# Cells, not whole frames: while the user talks over the echo, their voice fills some bands
# of a frame and leaves the echo alone in others. On the bench's saved audio (60 rooms, each
# with the path learned from `parley edge calibrate`'s noise in that room) the room's own path
# proved itself in a median 0.70 s (at most 1.7 s) with the user talking from 0.3 s into the
# reply, 0.51 s with the user from 1.5 s on (whole frames at -14 dB: 3.3 s and 1.1 s); its
# share was 0.11-0.88. No other room's path, the own path 30 ms late, or a path learned by
# the same device in another room (same delay and gain, other reflections) proved itself in
# 5 s: their share stayed at most 0.05. It is judged from the first frame (a path that
# proves itself before the delay is estimated was right at its remembered delay); once the
# delay is known, a window of _DROP_FRAMES frames of clear echo (its estimate a quarter of
# the mic's energy) where it leaves no less than the filter learning from cold drops it, as
# does having no verdict after _PROOF_LIMIT_FRAMES frames of far end.
_PROOF_DB = -15.0
_PROOF_CELLS = 100
_PROOF_SHARE = 0.08
_PROOF_BANDS = 16
_DROP_FRAMES = 40
_PROOF_LIMIT_FRAMES = 1000
# The filter has settled once it has learned from this many frames of far end: its path is
# worth keeping for the next start (a restart whose session ended sooner leaves the file as
# it was), and speech from then on is not cancelled again (edge.aec.replay: on the bench's
# saved audio that helped speech from 0.3 s into the first reply, not from 1.5-4 s).
_SETTLED_FRAMES = 300


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
        self._filter = self._new_filter()
        self._estimator = (DelayEstimator(max_delay_ms=settings.max_delay_ms)
                           if settings.estimate_delay else None)
        self._low_bins = int(LOW_BAND_HZ * 2 * n / PROCESSING_RATE) + 1
        # Reverberation spreads the echo of a frame over the next ones (~RT60 0.6 s at most).
        self._low_weights = 0.9 ** np.arange(self.partitions)
        self._low_band_echo = np.zeros(self._low_bins)
        self._late = LateReverb(n + 1) if settings.late_reverb else None
        self.reset()

    def _new_filter(self) -> KalmanEchoFilter | ShadowedEchoFilter:
        if self.settings.shadow_filter:
            return ShadowedEchoFilter(FRAME_SAMPLES, self.partitions)
        return KalmanEchoFilter(FRAME_SAMPLES, self.partitions)

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
        # The delay the filter's coefficients are aligned to, sub-sample slides included.
        self._aligned: float | None = None if self._estimator else self.delay_samples
        self._learned_frames = 0  # frames of far end the filter has learned from
        self._candidate: _Candidate | None = None
        self.remembered = "none"  # a remembered path: "on probation", "taken over", "dropped"

    def remember(self, echo: LearnedEchoPath) -> None:
        """Start again, from an echo path learned before if it fits this room (see
        :mod:`edge.aec.memory`).

        The stage runs exactly as from a cold start. Beside it the remembered path predicts
        the echo (its output unused, learning nothing): once it has explained the echo where
        it predicts one (see ``_PROOF_DB``), it takes over and learns on (the suppressor then
        trusts it as it did before the restart); when it does no better than the filter
        learning from cold, it is dropped. So a remembered path can only make the start
        better than a cold one. A delay estimate more than the estimator's tolerance away
        from the remembered delay moves the remembered path with it (the device's latency
        changed, not the room), and its proof starts again.
        """
        shape = (self.partitions, FRAME_SAMPLES + 1)
        if echo.coefficients.shape != shape:
            raise EchoMemoryError("the remembered echo path has partitions x bins "
                                  f"{echo.coefficients.shape}, this canceller's filter {shape} "
                                  "(another tail_ms?)")
        self.reset()
        remembered = self._new_filter()
        remembered.load(echo.coefficients, echo.uncertainty)
        self._candidate = _Candidate(remembered, echo, self._frames_for(echo.delay_samples))
        self.remembered = "on probation"

    def echo_path(self) -> LearnedEchoPath | None:
        """What :meth:`remember` takes: while a remembered path is on probation, that path;
        otherwise the path learned so far, once the delay is known and the filter has learned
        from ``_SETTLED_FRAMES`` frames of far end (None before)."""
        if self._candidate is not None:
            return self._candidate.echo
        if not self.settled:
            return None
        assert self._aligned is not None  # settled
        return LearnedEchoPath(round(self._aligned), self._filter.coefficients,
                               self._filter.uncertainty)

    @property
    def settled(self) -> bool:
        """True once the delay is known and the filter has learned from ``_SETTLED_FRAMES``
        frames of far end (or a remembered path took over): what it still learns is detail."""
        return self._aligned is not None and self._learned_frames >= _SETTLED_FRAMES

    def rewind(self, back: int, follow_delay: bool = True) -> None:
        """Get ready to cancel earlier audio again, from ``back`` samples before now, with
        what has been learned. The far end heard so far is forgotten (what comes next is
        older), and the filter slides back along the clock drift followed so far (the delay
        was that much different then). With ``follow_delay`` the delay estimate goes on
        from the delay of then (see :meth:`edge.aec.delay.DelayEstimator.rewind`): the jump
        back in time is no delay change, drift and jumps within the earlier audio are
        followed as live. Without it (a replay of a few seconds, at half the cost) the delay
        stays where it is now."""
        self._history.reset()
        estimator = self._estimator
        if estimator is None:
            return
        earlier = -estimator.drift * back if self.settings.track_drift else 0.0
        self._unslid += earlier
        if abs(self._unslid) >= _SLIDE_STEP:
            self._slide(self._unslid)
        if not follow_delay:
            self._estimator = None
        else:
            estimator.rewind(back, None if self.delay_samples is None
                             else round(self.delay_samples + earlier))

    def _delay_known(self) -> bool:
        return self.delay_estimated or self._estimator is None

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
                self._slide(self._unslid)
        self._history.push(far)
        spectra, power = self._history.window(self.delay_frames, self.partitions)
        out = self._filter.process(mic, spectra, power)
        self._learned_frames += bool(power.any())
        if self._candidate is not None and self._try_remembered(mic, out.error):
            # This frame's output and predicted residual come from the path taking over:
            # the cold filter's residual with the remembered path's confidence leaked echo.
            spectra, power = self._history.window(self.delay_frames, self.partitions)
            out = self._filter.process(mic, spectra, power)
        self._low_band_echo = 0.5 * (self._low_weights @ power[:, : self._low_bins])
        if self._late is not None:
            self._late.update(self._filter.coefficient_power, power[-1])
        return self._guard(mic, out)

    def _slide(self, samples: float) -> None:
        """Move the filter (and a remembered path on probation) ``samples`` along."""
        if samples:
            self._filter.slide(samples)
            if self._candidate is not None:
                self._candidate.filter.slide(samples)
            if self._aligned is not None:
                self._aligned += samples
        self._unslid = 0.0

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

    def _try_remembered(self, mic: np.ndarray, main_error: np.ndarray) -> bool:
        """Predict this frame's echo with the remembered path (see :meth:`remember`), judge
        it, and let it take over once it has proved itself (True when it just did)."""
        candidate = self._candidate
        assert candidate is not None
        spectra, power = self._history.window(candidate.delay_frames, self.partitions)
        if not power.any():
            return False  # no far end in its window: nothing to prove (and no cost)
        out = candidate.filter.predict(mic, spectra)
        verdict = candidate.judge(mic, out, float(np.dot(main_error, main_error)),
                                  may_drop=self._delay_known())
        if verdict is None:
            return False
        self.remembered = "taken over" if verdict else "dropped"
        if verdict:
            self._filter = candidate.filter
            self.delay_frames = candidate.delay_frames
            self._learned_frames = _SETTLED_FRAMES + _SCALE_RAMP_FRAMES  # learned long ago
            if self._estimator is None or self._aligned is None:  # (before the estimate)
                self._aligned = float(candidate.echo.delay_samples)  # proved where it was
            if self._estimator is None:
                self.delay_samples = candidate.echo.delay_samples
        self._candidate = None
        return verdict

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
        first = not self.delay_estimated
        if first or slid:
            self._filter.shift(frames - self.delay_frames)
            if self._candidate is not None:
                self._candidate.follow(delay_samples, frames, first)
        else:  # the delay jumped
            self._filter.doubt()
            if self._candidate is not None:  # before the remembered path proved itself
                self._candidate = None
                self.remembered = "dropped"
        if first or not slid:  # a later slid change is already in `_aligned`
            self._aligned = None if delay_samples is None else float(delay_samples)
        self.delay_samples, self.delay_estimated = delay_samples, True
        self.delay_frames = frames

    def _prediction_scale(self) -> float:
        """``PREDICTION_SCALE`` once settled, reached in ``_SCALE_RAMP_FRAMES`` (in dB)."""
        if not self.settled:
            return 1.0
        ramp = min(1.0, (self._learned_frames - _SETTLED_FRAMES) / _SCALE_RAMP_FRAMES)
        return float(PREDICTION_SCALE**ramp)

    @property
    def residual_power(self) -> np.ndarray:
        """Predicted echo power left in the last frame's error spectrum (per bin).

        The filter's own prediction (times ``PREDICTION_SCALE`` once settled), except below
        ``LOW_BAND_HZ``: there a voice's fundamental is an almost pure tone the filter learns
        poorly while believing it has, so the whole echo that far-end sound could make (path
        gain up to 0 dB) is assumed.
        That takes a few dB off the user's fundamental in double talk; dropping it cut the
        double-talk WER by 0.01-0.03 on 60 rooms but cost ~0.3 dB of ERLE in room 20, which
        then rendered below 25 dB in most test runs (and 1.2-1.7 dB of median ERLE): kept.
        """
        predicted = self._filter.residual_power * self._prediction_scale()
        low = predicted[: self._low_bins]
        np.maximum(low, self._low_band_echo, out=low)
        return predicted

    @property
    def late_power(self) -> np.ndarray | None:
        """Predicted echo beyond the filter's window, per bin (see :mod:`edge.aec.reverb`)."""
        return None if self._late is None else self._late.power


class _Candidate:
    """A remembered echo path on probation: its filter, where it reads the far end, and what
    it has explained so far (see ``_PROOF_DB``)."""

    def __init__(self, filter: KalmanEchoFilter | ShadowedEchoFilter, echo: LearnedEchoPath,
                 delay_frames: int) -> None:
        self.filter, self.echo, self.delay_frames = filter, echo, delay_frames
        self._far_frames = 0
        self._restart_proof()
        self._window = 0  # frames of clear echo in the window that may drop it
        self._error = self._cold_error = 0.0

    def _restart_proof(self) -> None:
        self._clear_cells = self._explained_cells = 0

    def follow(self, delay_samples: int | None, frames: int, first: bool) -> None:
        """Read the far end at ``frames`` from now on, as the stage's filter does. The first
        estimate also moves the path by how far it is from the remembered delay, beyond the
        estimator's tolerance (what it explained where it was no longer counts)."""
        later = (self.delay_frames - frames) * FRAME_SAMPLES  # the path, seen from `frames`
        moved = (delay_samples or 0) - self.echo.delay_samples
        if first and abs(moved) > DELAY_TOLERANCE:
            later += moved
            self._restart_proof()
        whole = round(later / FRAME_SAMPLES)
        self.filter.shift(-whole)
        if later != whole * FRAME_SAMPLES:
            self.filter.slide(later - whole * FRAME_SAMPLES)
        self.delay_frames = frames

    def judge(self, mic: np.ndarray, out: FilterOutput, cold_error: float,
              may_drop: bool) -> bool | None:
        """One frame of far end (``cold_error``: the energy the filter learning from cold
        left in it); True once the path has proved itself, False once it has failed (only
        when ``may_drop``: the delay is known)."""
        if self._proved(mic, out.error, out.echo):
            return True
        if not may_drop:
            return None
        self._far_frames += 1
        mic_energy = float(np.dot(mic, mic))
        if float(np.dot(out.echo, out.echo)) >= 0.25 * mic_energy > 0.0:
            self._window += 1
            self._error += float(np.dot(out.error, out.error))
            self._cold_error += cold_error
        if self._window >= _DROP_FRAMES:
            if self._error >= self._cold_error:
                return False
            self._window = 0
            self._error = self._cold_error = 0.0
        return False if self._far_frames >= _PROOF_LIMIT_FRAMES else None

    def _proved(self, mic: np.ndarray, error: np.ndarray, echo: np.ndarray) -> bool:
        m, e, y = (_band_energies(x) for x in (mic, error, echo))
        clear = (y >= 0.25 * m) & (m > 0.0)
        self._clear_cells += int(clear.sum())
        self._explained_cells += int((clear & (e <= 10.0 ** (_PROOF_DB / 10.0) * m)).sum())
        return (self._explained_cells >= _PROOF_CELLS
                and self._explained_cells >= _PROOF_SHARE * self._clear_cells)


_PROOF_WINDOW = np.hanning(FRAME_SAMPLES)


def _band_energies(frame: np.ndarray) -> np.ndarray:
    """A frame's energy in ``_PROOF_BANDS`` equal bands above the lowest bin."""
    power = np.abs(np.fft.rfft(frame * _PROOF_WINDOW)) ** 2
    return np.asarray(power[1:].reshape(_PROOF_BANDS, -1).sum(axis=1))


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

    def _linear_stage(self) -> LinearEchoStage:
        return self._linear

    def _delay_samples(self) -> int | None:
        return self._linear.delay_samples

    def _delay_estimated(self) -> bool:
        return self._linear.delay_estimated
