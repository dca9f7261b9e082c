"""Residual echo suppression after the linear filter (short-time spectral gain).

Each bin of the linear stage's output is attenuated by how much of it is predicted to be
echo: ``gain = max(floor, 1 - overestimate * residual / power)``. The residual echo
prediction comes from the Kalman filter's own uncertainty, so it is large from a cold start
(the filter has learned nothing yet: the echo is suppressed) and shrinks as the filter
converges; it does not grow when the user talks, so the user's voice passes during double
talk wherever it is louder than the echo that is left. The filter's uncertainty is
occasionally over-confident on strongly tonal bins (its diagonal model ignores how much
neighbouring partitions of voiced speech resemble each other), so a small share
(``echo_leak``) of the linear echo estimate is always counted as possible residual too.

The filter's uncertainty can also be wrong by 10-15 dB for a moment: on a voiced far end
whose harmonics sit still, its diagonal model learns a combination of partitions that fits
that sound and not the next, while believing it has converged. What it then leaves still
moves with its own echo estimate (the user's voice does not), so the share of each bin that
is coherent with the echo estimate over the last ~10 frames counts as residual echo too.

While the user clearly dominates (the speech band holds ``nearend_dominance_db`` more than
the predicted echo, its leak and the background noise explain, in this frame or one of the
last ``hold_frames``), the margins go (no leak, and only ``nearend_overestimate`` of the
predicted residual is removed): they are what keeps the echo down when the far end plays
alone, and during double talk they notched the user's voice, which cost whisper words. Once
the filter had converged its prediction was a median ~7 dB above the echo actually left
(speech band, 10 rooms; Kalman transition 0.9995, ~4 dB under since 0.99999), so removing
all of it still notched the user's weaker bins. On
the same audio of 60 rooms, removing 0.3 of it took the converged double-talk WER from 0.30
to 0.27 (0.21 with no echo at all; 90 % interval of the change -0.058 to +0.003), the cold
start's 0.31 to 0.32 (noise), and left the ERLE as it was. With the low-band assumption of
:class:`~edge.aec.linear.LinearEchoStage` off (where these shares were chosen), 0.5 gave 0.26
against 0.25 converged; 0.15 and 0 let the residual echo into the user's words from a cold
start (0.33, 0.35 against 0.28).

The threshold (6 dB) is high enough that a poorly cancelled echo (more residual than
predicted) does not pass for the user: on 60 rooms, 6 dB against 9 kept the ERLE and cut the
double-talk WER by 0.005-0.035; 4 dB and 3 dB let echo through (worst room 26.9 and 23.7 dB).
4 dB and no leak outside the near-end mode each gained ~0.015 converged, but took the worst
room to ~25.7 dB (low-band assumption off): left alone.

Two outputs. ``clean`` is suppressed as above: the VAD, barge-in and ``--clean-out`` get it,
and on it the agent's voice leaves nothing the VAD or whisper takes for speech. The
recognizer's copy is by default the linear stage's output itself, one frame late like
``clean`` (``recognizer_overestimate`` 0): whisper decodes only what the VAD found on
``clean`` (the user talking), and there any gain on the user's voice cost more words than
the residual echo left by a linear filter that holds the room still (Kalman transition
0.99999, :mod:`edge.aec.filter`). On the saved audio of 60 rooms, calibrated live agent,
pooled WER: users 0.3 s into the reply 0.265 -> 0.217, users 1.5-4 s in 0.267 -> 0.222
(the user alone: 0.214 / 0.210); each change alone did nothing beyond whisper's scatter
(suppression off at transition 0.9995: 0.267 / 0.279; transition 0.99999 with suppression:
0.264 / 0.254). ``recognizer_overestimate`` > 0 removes that share of the predicted
residual in either mode, never cutting a bin by more than ``recognizer_floor_db``. On the
far end alone the copy holds words whisper finds: it must never be decoded without the
VAD on ``clean``.

The linear stage also predicts the echo a long room keeps ringing after its window (late
reverberation, :mod:`edge.aec.reverb`): the near-end test counts it as echo, and the clean
output suppresses it outside the near-end mode; the recognizer's copy does not.

Suppressed bins are refilled with comfort noise at the tracked background level: without
it the background noise would pump with the echo's spectro-temporal envelope, which is a
noise-vocoded copy of the agent's words that whisper happily transcribes.

Analysis/synthesis: square-root Hann windows of ``2N`` with hop ``N`` (overlap-add), which
delays the output by ``N`` samples (one frame).
"""

from __future__ import annotations

import numpy as np

from shared.audio import PROCESSING_RATE

SPEECH_BAND_HZ = (250.0, 4000.0)  # where the near-end dominance is decided


class NoiseFloor:
    """Background noise power per bin: the smoothed spectrum's minimum, rising slowly
    (``rise_db_per_s``) so it follows a noise that gets louder but not speech. The minimum
    of a fluctuating spectrum sits below its mean; ``BIAS`` (measured on steady noise, 3.6 dB)
    brings it back."""

    BIAS = 2.3

    def __init__(self, bins: int, rise_db_per_s: float = 3.0, frame_s: float = 0.01) -> None:
        self._rise = 10 ** (rise_db_per_s * frame_s / 10)
        self._bins = bins
        self.reset()

    def reset(self) -> None:
        self._smoothed = np.zeros(self._bins)
        self.power = np.zeros(self._bins)
        self._started = False

    def update(self, power: np.ndarray) -> np.ndarray:
        self._smoothed += 0.3 * (power - self._smoothed)
        if not self._started:
            self._smoothed[:] = power
            self.power = power + 1e-12
            self._started = True
        self.power = np.minimum(self.power * self._rise, self._smoothed + 1e-12)
        return self.power * self.BIAS


class ResidualEchoSuppressor:
    """Spectral gain stage with comfort noise; pure numpy, stateful across frames."""

    def __init__(self, frame: int = 160, overestimate: float = 4.0, floor_db: float = -40.0,
                 echo_leak: float = 0.05, comfort_noise: bool = True,
                 nearend_dominance_db: float | None = 6.0, nearend_overestimate: float = 0.3,
                 nearend_leak: float = 0.0, hold_frames: int = 15,
                 coherence_smoothing: float = 0.9,
                 coherence_threshold: float | None = 0.35,
                 recognizer_overestimate: float | None = 0.0,
                 recognizer_floor_db: float = -20.0) -> None:
        self.frame = frame
        self._noise = NoiseFloor(frame + 1)
        self._comfort_on = comfort_noise
        self.latency_samples = frame
        self._window = np.sqrt(np.hanning(2 * frame + 1)[: 2 * frame])
        self._overestimate = overestimate
        self._floor = 10 ** (floor_db / 20)
        self._leak = echo_leak
        self._dominance = (None if nearend_dominance_db is None
                           else 10 ** (nearend_dominance_db / 10))
        self._nearend_overestimate, self._nearend_leak = nearend_overestimate, nearend_leak
        self._hold_frames = hold_frames
        self._coherence_smoothing = coherence_smoothing
        self._coherence_threshold = coherence_threshold
        self._recognizer_overestimate = recognizer_overestimate
        self._recognizer_floor = 10 ** (recognizer_floor_db / 20)
        hz_per_bin = PROCESSING_RATE / (2 * frame)
        self._speech = slice(int(SPEECH_BAND_HZ[0] / hz_per_bin),
                             int(SPEECH_BAND_HZ[1] / hz_per_bin) + 1)
        self.reset()

    def reset(self) -> None:
        n = self.frame
        self._last_in = np.zeros(n)
        self._last_echo = np.zeros(n)
        self._last_residual = np.zeros(n + 1)
        self._overlap = np.zeros(n)
        self._recognizer_overlap = np.zeros(n)
        self.gain = np.ones(n + 1)
        self._hold = 0
        self.nearend_dominant = False
        self._error_power = np.zeros(n + 1)
        self._echo_power = np.zeros(n + 1)
        self._cross = np.zeros(n + 1, dtype=np.complex128)
        self._rng = np.random.default_rng(0)
        self._noise.reset()

    def process(self, error: np.ndarray, echo: np.ndarray, residual_power: np.ndarray,
                late_power: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Suppress one frame of the linear stage's ``error``; returns the frame before it,
        twice: suppressed as set (``clean``), and for the recognizer (see the module doc).

        ``residual_power`` is the predicted residual echo power of this frame (in the scale of
        the linear stage's error spectrum, which matches this stage's windowed spectrum);
        ``late_power`` the echo predicted beyond the linear filter's window (late
        reverberation, :mod:`edge.aec.reverb`): the near-end test counts it as echo, and the
        clean output (not the recognizer's copy) suppresses it outside the near-end mode.
        """
        w = self._window
        spectrum = np.fft.rfft(np.concatenate([self._last_in, error]) * w)
        power = spectrum.real**2 + spectrum.imag**2
        echo_spec = np.fft.rfft(np.concatenate([self._last_echo, echo]) * w)
        echo_power = echo_spec.real**2 + echo_spec.imag**2
        residual = np.maximum(0.5 * (residual_power + self._last_residual),
                              self._coherent_share(spectrum, power, echo_spec, echo_power))
        predicted = residual + self._leak * echo_power
        noise = self._noise.update(power)
        late = np.zeros_like(power) if late_power is None else late_power
        self.nearend_dominant = self._dominant(power, predicted + noise + late)
        overestimate = self._overestimate
        if self.nearend_dominant:
            overestimate = self._nearend_overestimate
            predicted = residual + self._nearend_leak * echo_power
        share = predicted / (power + 1e-12)
        clean_share = share if self.nearend_dominant else share + late / (power + 1e-12)
        self.gain = np.maximum(self._floor, 1.0 - overestimate * clean_share)
        phase = np.exp(2j * np.pi * self._rng.random(power.size))
        clean, self._overlap = self._synthesize(spectrum, self.gain, noise, phase, self._overlap)
        recognizer = clean
        if self._recognizer_overestimate == 0.0:
            # unit gain: the windows overlap-add to one, so that is the frame before, as is
            recognizer = np.array(self._last_in, dtype=np.float64)
        elif self._recognizer_overestimate is not None:
            gain = np.maximum(self._recognizer_floor,
                              1.0 - self._recognizer_overestimate * share)
            recognizer, self._recognizer_overlap = self._synthesize(
                spectrum, gain, noise, phase, self._recognizer_overlap)
        self._last_in, self._last_echo, self._last_residual = error, echo, residual_power
        return clean, recognizer

    def _synthesize(self, spectrum: np.ndarray, gain: np.ndarray, noise: np.ndarray,
                    phase: np.ndarray, overlap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Overlap-add one frame of ``spectrum * gain`` topped up with comfort noise: the
        finished frame, and the new overlap."""
        out = np.fft.irfft(spectrum * gain + self._comfort(noise, gain, phase)) * self._window
        return overlap + out[: self.frame], out[self.frame:]

    def _coherent_share(self, spectrum: np.ndarray, power: np.ndarray,
                        echo_spec: np.ndarray, echo_power: np.ndarray) -> np.ndarray:
        """The part of the input that moves with the linear stage's echo estimate: echo the
        filter mis-modelled (its own uncertainty says it has converged). Per bin, the
        magnitude-squared coherence of the input with the echo estimate over the last ~10
        frames; above ``coherence_threshold`` that share of the input power (rescaled to 0..1)
        counts as residual echo. The user's voice does not move with the echo estimate, so its
        coherence stays low."""
        t = self._coherence_threshold
        if t is None:
            return np.zeros_like(power)
        a = self._coherence_smoothing
        self._error_power = a * self._error_power + (1 - a) * power
        self._echo_power = a * self._echo_power + (1 - a) * echo_power
        self._cross = a * self._cross + (1 - a) * spectrum * np.conj(echo_spec)
        cross = self._cross.real**2 + self._cross.imag**2
        coherence = cross / (self._error_power * self._echo_power + 1e-20)
        return np.asarray(np.clip((coherence - t) / (1.0 - t), 0.0, 1.0) * power)

    def _dominant(self, power: np.ndarray, expected: np.ndarray) -> bool:
        """Whether the near end dominates: the speech band holds ``nearend_dominance_db`` more
        than the predicted echo (residual and leak) plus the background noise explain, in this
        frame or one of the last ``hold_frames`` (the gaps between the user's syllables)."""
        if self._dominance is None:
            return False
        band = self._speech
        if float(np.sum(power[band])) > self._dominance * float(np.sum(expected[band])) + 1e-12:
            self._hold = self._hold_frames
        else:
            self._hold = max(0, self._hold - 1)
        return self._hold > 0

    def _comfort(self, floor: np.ndarray, gain: np.ndarray,
                 phase: np.ndarray) -> np.ndarray | float:
        """Random-phase noise that tops suppressed bins back up to the background level."""
        if not self._comfort_on:
            return 0.0
        missing = np.sqrt(floor * np.maximum(0.0, 1.0 - gain**2))
        return np.asarray(missing * phase)
