"""Prosody of a stretch of the user's speech: pitch, loudness, tempo and pauses (pure numpy).

Computed on the device from the cleaned 16 kHz signal and sent with each ``transcript.final``;
the end-of-turn detector reads the last words' pitch movement, loudness decay and lengthening.

- f0: a YIN-style tracker (cumulative mean normalized difference, first dip under a threshold,
  parabolic refinement) on 40 ms frames every 10 ms, 60-400 Hz, vectorized over frames with
  one FFT each; octave jumps are folded back towards the segment median.
- energy: frame RMS in dBFS; "speech" frames are those within 35 dB of the loud frames and
  above -60 dBFS. Pauses are runs of non-speech frames of at least 150 ms.
- tempo: words per second of speech time when the word count is known, otherwise syllable
  nuclei (voiced peaks of the smoothed energy contour) per second divided by 1.4.

Every input gives finite numbers: silence, noise, clipping, NaNs and tiny segments fall back to
the defaults of :class:`ProsodyFeatures` (f0 values 0.0 mean "nothing voiced was measured").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from shared.audio import PROCESSING_RATE, Samples

if TYPE_CHECKING:
    from shared.protocol import Prosody

Floats = npt.NDArray[np.float64]

HOP_S = 0.010
F0_MIN_HZ = 60.0
F0_MAX_HZ = 400.0
_WINDOW_S = 0.025  # YIN integration window; the frame is this plus the longest lag
_YIN_DIP = 0.15  # first dip of the normalized difference under this is the period
_YIN_VOICED = 0.35  # above this at the chosen lag the frame is unvoiced
_SPEECH_FLOOR_DB = -60.0
_SPEECH_SPAN_DB = 35.0
_MIN_PAUSE_S = 0.15
_FINAL_SLOPE_S = 0.40  # the final pitch movement is fitted over this much voiced time
_FINAL_LEVEL_S = 0.15
_FINAL_ENERGY_S = 0.20
_SYLLABLES_PER_WORD = 1.4


@dataclass(frozen=True, slots=True)
class PitchTrack:
    """Frame-wise analysis: frame centre times, f0 (0.0 where unvoiced) and level in dBFS."""

    times_s: Floats
    f0_hz: Floats
    level_db: Floats

    @property
    def voiced(self) -> npt.NDArray[np.bool_]:
        return self.f0_hz > 0.0


@dataclass(frozen=True, slots=True)
class ProsodyFeatures:
    """How a segment was said. All values are finite; f0 fields are 0.0 when nothing voiced."""

    duration_s: float = 0.0
    speech_s: float = 0.0  # time in speech frames (pauses excluded)
    voiced_s: float = 0.0
    f0_mean_hz: float = 0.0
    f0_range_hz: float = 0.0  # 5th to 95th percentile
    f0_final_slope_hz_s: float = 0.0  # over the last ~400 ms of voiced speech; > 0 rising
    f0_final_slope_st_s: float = 0.0  # the same in semitones per second (voice-independent)
    f0_final_st: float = 0.0  # last ~150 ms of voiced pitch vs the segment median, semitones
    energy_db: float = -120.0  # mean level of the speech frames, dBFS
    energy_final_decay_db: float = 0.0  # speech level minus the last 200 ms of speech; > 0 fades
    speaking_rate_wps: float = 0.0
    syllables: int = 0
    pause_before_s: float = 0.0
    internal_pauses_s: tuple[float, ...] = ()
    final_lengthening: float = 1.0  # last syllable nucleus / median nucleus duration

    @property
    def measured(self) -> bool:
        """True when some voiced speech was found (the f0 fields mean something)."""
        return self.voiced_s > 0.0

    def to_message(self) -> Prosody:
        """The wire form (``shared.protocol.Prosody``), ``None`` where nothing was measured."""
        from shared.protocol import Prosody

        voiced = self.measured
        return Prosody(
            f0_mean_hz=self.f0_mean_hz if voiced else None,
            f0_range_hz=self.f0_range_hz if voiced else None,
            f0_final_slope_hz_per_s=self.f0_final_slope_hz_s if voiced else None,
            energy_db=self.energy_db if self.speech_s > 0 else None,
            speaking_rate_wps=self.speaking_rate_wps if self.speech_s > 0 else None,
            pause_before_ms=self.pause_before_s * 1000.0,
        )


def analyze(
    samples: Samples,
    rate: int = PROCESSING_RATE,
    *,
    word_count: int | None = None,
    pause_before_s: float | None = None,
) -> ProsodyFeatures:
    """Prosody of ``samples`` (mono float32 at ``rate``; any rate works, 16 kHz is cheapest).

    ``word_count`` (from the transcript) gives the speaking rate in words per second; without
    it the rate is estimated from syllable nuclei. ``pause_before_s`` is the silence before the
    segment when the caller knows it; otherwise the segment's own leading silence is used.
    """
    x = _clean(samples)
    duration = float(x.size / rate) if rate > 0 else 0.0
    track = track_pitch(x, rate)
    speech = _speech_frames(track.level_db)
    if not speech.any():
        return ProsodyFeatures(duration_s=float(duration),
                               pause_before_s=_finite(pause_before_s))
    first, last = np.flatnonzero(speech)[[0, -1]]
    speech_s = float(speech.sum()) * HOP_S
    nuclei = _nuclei(track, speech)
    syllables = len(nuclei)
    if word_count is not None and word_count > 0:
        rate_wps = word_count / speech_s
    else:
        rate_wps = syllables / speech_s / _SYLLABLES_PER_WORD
    return ProsodyFeatures(
        duration_s=duration,
        speech_s=speech_s,
        **_pitch_features(track, speech),
        energy_db=float(np.mean(track.level_db[speech])),
        energy_final_decay_db=_energy_decay(track.level_db, speech),
        speaking_rate_wps=float(rate_wps),
        syllables=syllables,
        pause_before_s=float(first) * HOP_S if pause_before_s is None else _finite(pause_before_s),
        internal_pauses_s=_pauses(speech[first:last + 1]),
        final_lengthening=_final_lengthening(nuclei),
    )


class ProsodyMeter:
    """The edge pipeline's prosody stage: features of the turn so far, words from its text."""

    def measure(self, audio: Samples, text: str,
                pause_before_ms: float | None) -> ProsodyFeatures:
        words = len(text.split()) if text else None
        before = None if pause_before_ms is None else pause_before_ms / 1000.0
        return analyze(audio, word_count=words, pause_before_s=before)


def track_pitch(samples: Samples | Floats, rate: int = PROCESSING_RATE) -> PitchTrack:
    """f0 and level every 10 ms; a segment shorter than one analysis frame gives an empty track.

    The level is measured at ``rate``; the pitch on a copy decimated to 8 kHz (f0 < 400 Hz
    needs no more), which makes the FFTs four times cheaper.
    """
    x = _clean(samples)
    empty = np.zeros(0, dtype=np.float64)
    if rate < 2 * F0_MAX_HZ or x.size < (_WINDOW_S + 1.0 / F0_MIN_HZ) * rate:
        return PitchTrack(empty, empty.copy(), empty.copy())
    y, pitch_rate = _decimate(x, rate)
    hop = round(HOP_S * pitch_rate)
    window = round(_WINDOW_S * pitch_rate)
    lag_max = int(np.ceil(pitch_rate / F0_MIN_HZ))
    frame = window + lag_max
    if y.size < frame:
        return PitchTrack(empty, empty.copy(), empty.copy())
    n_frames = 1 + (y.size - frame) // hop
    frames = np.lib.stride_tricks.sliding_window_view(y, frame)[::hop][:n_frames]
    frames = frames - frames.mean(axis=1, keepdims=True)
    level = _levels(x, round(HOP_S * rate), round(_WINDOW_S * rate), n_frames)
    lag, quality = _pick_lags(_cmnd(frames, window, lag_max), int(pitch_rate / F0_MAX_HZ))
    voiced = (quality < _YIN_VOICED) & (level > _SPEECH_FLOOR_DB)
    f0 = _fold_octaves(np.where(voiced, pitch_rate / np.maximum(lag, 1.0), 0.0))
    times = (np.arange(n_frames) * hop + window / 2) / pitch_rate
    return PitchTrack(times_s=times, f0_hz=f0, level_db=level)


def _decimate(x: Floats, rate: int) -> tuple[Floats, int]:
    """Low-pass (31-tap windowed sinc) and keep every n-th sample, down to about 8 kHz."""
    factor = rate // 8000
    if factor < 2:
        return x, rate
    taps = np.arange(-15, 16)
    kernel = np.sinc(taps / factor) * np.hamming(taps.size)
    kernel /= kernel.sum()
    return np.convolve(x, kernel, mode="same")[::factor], rate // factor


def _levels(x: Floats, hop: int, window: int, n_frames: int) -> Floats:
    """RMS level (dBFS, DC removed) of ``n_frames`` windows every ``hop`` samples."""
    sums = np.concatenate([[0.0], np.cumsum(x)])
    squares = np.concatenate([[0.0], np.cumsum(np.square(x))])
    starts = np.minimum(np.arange(n_frames) * hop, max(0, x.size - window))
    ends = np.minimum(starts + window, x.size)
    count = np.maximum(ends - starts, 1)
    mean = (sums[ends] - sums[starts]) / count
    power = np.maximum((squares[ends] - squares[starts]) / count - mean**2, 0.0)
    levels: Floats = 10.0 * np.log10(np.maximum(power, 1e-12))
    return levels


def _clean(samples: Samples | Floats) -> Floats:
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    return np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)


def _finite(value: float | None) -> float:
    if value is None or not np.isfinite(value):
        return 0.0
    return max(0.0, float(value))


def _cmnd(frames: Floats, window: int, lag_max: int) -> Floats:
    """YIN's cumulative mean normalized difference d'(lag) for lags 0..lag_max, per frame."""
    n_fft = 1 << int(np.ceil(np.log2(frames.shape[1])))
    head = np.fft.rfft(frames[:, :window], n_fft)
    whole = np.fft.rfft(frames, n_fft)
    corr = np.fft.irfft(np.conj(head) * whole, n_fft)[:, : lag_max + 1]
    energy = np.cumsum(np.square(frames), axis=1)
    energy = np.concatenate([np.zeros((frames.shape[0], 1)), energy], axis=1)
    lags = np.arange(lag_max + 1)
    shifted = energy[:, lags + window] - energy[:, lags]
    diff = np.maximum(shifted[:, :1] + shifted - 2.0 * corr, 0.0)
    running = np.cumsum(diff[:, 1:], axis=1)
    out = np.ones_like(diff)
    out[:, 1:] = diff[:, 1:] * lags[1:] / np.maximum(running, 1e-12)
    result: Floats = out
    return result


def _pick_lags(cmnd: Floats, lag_min: int) -> tuple[Floats, Floats]:
    """Per frame: the refined period (in samples) and d' at it (lower = more periodic)."""
    n, width = cmnd.shape
    rows = np.arange(n)
    search = cmnd[:, lag_min:]
    under = search < _YIN_DIP
    first = np.where(under.any(axis=1), under.argmax(axis=1), search.argmin(axis=1))
    # walk down from the first dip to its local minimum
    rising = np.concatenate([search[:, 1:] >= search[:, :-1], np.ones((n, 1), bool)], axis=1)
    after = np.arange(search.shape[1])[None, :] >= first[:, None]
    lag = (rising & after).argmax(axis=1) + lag_min
    inner = np.clip(lag, 1, width - 2)
    a, b, c = cmnd[rows, inner - 1], cmnd[rows, inner], cmnd[rows, inner + 1]
    denom = a - 2.0 * b + c
    shift = np.where(np.abs(denom) > 1e-12, 0.5 * (a - c) / np.where(denom == 0, 1, denom), 0.0)
    return inner + np.clip(shift, -1.0, 1.0), b


def _fold_octaves(f0: Floats) -> Floats:
    """Halve or double isolated octave errors relative to the median, then a 3-frame median."""
    voiced = f0 > 0
    if voiced.sum() < 3:
        return f0
    median = float(np.median(f0[voiced]))
    out = f0.copy()
    out[voiced & (out > 1.8 * median)] /= 2.0
    out[voiced & (out > 0) & (out < 0.55 * median)] *= 2.0
    padded = np.concatenate([out[:1], out, out[-1:]])
    smooth = np.median(np.lib.stride_tricks.sliding_window_view(padded, 3), axis=1)
    return np.where(voiced & (smooth > 0), smooth, out)


def _speech_frames(level_db: Floats) -> npt.NDArray[np.bool_]:
    if level_db.size == 0:
        return np.zeros(0, dtype=bool)
    loud = float(np.percentile(level_db, 95))
    return level_db > max(_SPEECH_FLOOR_DB, loud - _SPEECH_SPAN_DB)


def _pitch_features(track: PitchTrack, speech: npt.NDArray[np.bool_]) -> dict[str, float]:
    voiced = track.voiced & speech
    if voiced.sum() < 3:
        return {}
    f0 = track.f0_hz[voiced]
    times = track.times_s[voiced]
    median = float(np.median(f0))
    tail = times >= times[-1] - _FINAL_SLOPE_S
    slope = _slope(times[tail], f0[tail])
    slope_st = _slope(times[tail], 12.0 * np.log2(f0[tail] / median))
    final = float(np.median(f0[times >= times[-1] - _FINAL_LEVEL_S]))
    low, high = np.percentile(f0, [5, 95])
    return {
        "voiced_s": float(voiced.sum()) * HOP_S,
        "f0_mean_hz": float(np.mean(f0)),
        "f0_range_hz": float(high - low),
        "f0_final_slope_hz_s": slope,
        "f0_final_slope_st_s": slope_st,
        "f0_final_st": float(12.0 * np.log2(final / median)),
    }


def _slope(times: Floats, values: Floats) -> float:
    if times.size < 4:
        return 0.0
    t = times - times.mean()
    denom = float(np.dot(t, t))
    return float(np.dot(t, values - values.mean()) / denom) if denom > 0 else 0.0


def _energy_decay(level_db: Floats, speech: npt.NDArray[np.bool_]) -> float:
    levels = level_db[speech]
    tail = max(1, round(_FINAL_ENERGY_S / HOP_S))
    return float(np.mean(levels) - np.mean(levels[-tail:]))


def _pauses(speech: npt.NDArray[np.bool_]) -> tuple[float, ...]:
    """Lengths of the runs of non-speech of at least 150 ms inside the speech span."""
    edges = np.diff(np.concatenate([[0], (~speech).astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    runs = (ends - starts) * HOP_S
    return tuple(round(float(r), 3) for r in runs if r >= _MIN_PAUSE_S - 1e-9)


def _nuclei(track: PitchTrack, speech: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """Syllable nuclei as (first, last) frame spans around voiced peaks of the energy contour."""
    level = track.level_db
    if level.size >= 5:
        level = np.convolve(level, np.ones(5) / 5, mode="same")
    level = np.where(speech, level, -120.0)
    peaks = [i for i in range(1, level.size - 1)
             if level[i] >= level[i - 1] and level[i] > level[i + 1]
             and track.f0_hz[i] > 0 and speech[i]]
    kept: list[int] = []
    for p in peaks:  # merge peaks not separated by a 2 dB dip
        if kept and (p - kept[-1] < 8 or level[kept[-1]:p + 1].min() > min(
                level[kept[-1]], level[p]) - 2.0):
            if level[p] > level[kept[-1]]:
                kept[-1] = p
            continue
        kept.append(p)
    return [_span(level, p) for p in kept]


def _span(level: Floats, peak: int, drop_db: float = 4.0) -> tuple[int, int]:
    floor = level[peak] - drop_db
    lo = peak
    while lo > 0 and level[lo - 1] > floor:
        lo -= 1
    hi = peak
    while hi < level.size - 1 and level[hi + 1] > floor:
        hi += 1
    return lo, hi


def _final_lengthening(nuclei: list[tuple[int, int]]) -> float:
    if len(nuclei) < 3:
        return 1.0
    lengths = np.array([hi - lo + 1 for lo, hi in nuclei], dtype=np.float64)
    return float(lengths[-1] / max(np.median(lengths[:-1]), 1.0))
