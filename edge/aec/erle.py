"""Echo-cancellation metrics: ERLE, a running ERLE meter, and near-end preservation.

ERLE (echo return loss enhancement) is how much quieter the cancelled signal is than the
microphone while only the far end is active: ``10 log10(sum mic^2 / sum out^2)``. Noise at the
mic caps what can be measured, so scenes keep the noise well below the echo.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.audio import PROCESSING_RATE, Samples

FRAME = 160
_TINY = 1e-12


def erle_db(mic: Samples, out: Samples, mask: np.ndarray | None = None) -> float:
    """ERLE over the samples selected by ``mask`` (all by default), in dB."""
    m = np.ones(mic.size, dtype=bool) if mask is None else mask[: mic.size]
    num = float(np.sum(np.square(mic[m], dtype=np.float64)))
    den = float(np.sum(np.square(out[: mic.size][m], dtype=np.float64)))
    return 10.0 * float(np.log10((num + _TINY) / (den + _TINY)))


def split_mask(mask: np.ndarray, start_s: float, end_s: float | None = None) -> np.ndarray:
    """``mask`` restricted to ``[start_s, end_s)`` seconds after its first selected sample."""
    out = np.zeros_like(mask)
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return out
    a = idx[0] + int(start_s * PROCESSING_RATE)
    b = mask.size if end_s is None else idx[0] + int(end_s * PROCESSING_RATE)
    out[a:b] = mask[a:b]
    return out


@dataclass(frozen=True, slots=True)
class ErleReport:
    """ERLE over a far-end-only part from a cold start: first 2 s, after 4 s, and whole."""

    cold_db: float
    steady_db: float
    whole_db: float


def erle_report(mic: Samples, out: Samples, far_only: np.ndarray) -> ErleReport:
    return ErleReport(cold_db=erle_db(mic, out, split_mask(far_only, 0.0, 2.0)),
                      steady_db=erle_db(mic, out, split_mask(far_only, 4.0)),
                      whole_db=erle_db(mic, out, far_only))


def frame_db(x: Samples, frame: int = FRAME) -> np.ndarray:
    """Energy of each whole frame of ``x``, dBFS."""
    n = x.size // frame * frame
    power = np.mean(np.square(x[:n].reshape(-1, frame), dtype=np.float64), axis=1)
    return np.asarray(10.0 * np.log10(power + _TINY), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class NearEndLoss:
    """How much of the user's speech survives the canceller, over frames where the user talks.

    ``median_db``: median level change of those frames (0 = untouched; negative = attenuated);
    ``p10_db``: the 10th percentile (the worst-treated frames); ``eaten``: share of frames
    attenuated by more than 10 dB; ``eaten_dominant``: the same share among the frames where
    the user was louder than the echo at the mic (words a suppressor should never swallow).
    """

    median_db: float
    p10_db: float
    eaten: float
    eaten_dominant: float = 0.0


def near_end_loss(out: Samples, near: Samples, mask: np.ndarray, latency: int = 0,
                  min_db: float = -50.0, echo: Samples | None = None) -> NearEndLoss:
    """Level change of the near-end speech through the canceller, over ``mask`` frames.

    ``latency`` is the canceller's output delay in samples. Frames where the near end is
    quieter than ``min_db`` are ignored. Residual echo can only raise the output level, so a
    negative figure is near-end speech removed. ``echo`` (the echo at the mic) gives
    ``eaten_dominant``.
    """
    aligned = out[latency:]
    n = min(aligned.size, near.size) // FRAME * FRAME
    ref_db, out_db = frame_db(near[:n]), frame_db(aligned[:n])
    sel = mask[:n].reshape(-1, FRAME).all(axis=1) & (ref_db > min_db)
    if not np.any(sel):
        return NearEndLoss(0.0, 0.0, 0.0)
    change = out_db - ref_db
    cut = change < -10.0
    dominant = sel if echo is None else sel & (ref_db > frame_db(echo[:n]))
    return NearEndLoss(
        median_db=float(np.median(change[sel])), p10_db=float(np.percentile(change[sel], 10)),
        eaten=float(np.mean(cut[sel])),
        eaten_dominant=float(np.mean(cut[dominant])) if np.any(dominant) else 0.0)


class ErleMeter:
    """Running ERLE of a canceller: smoothed mic and output power while the far end plays.

    Double talk lowers the figure (the user's voice is in the output): like any running ERLE,
    it is a convergence indicator, not a measurement.
    """

    def __init__(self, smoothing_s: float = 1.0, far_floor_db: float = -60.0) -> None:
        self._alpha = FRAME / (smoothing_s * PROCESSING_RATE)
        self._far_floor = 10 ** (far_floor_db / 10)
        self.reset()

    def reset(self) -> None:
        self._mic = 0.0
        self._out = 0.0

    def update(self, mic: np.ndarray, out: np.ndarray, far: np.ndarray) -> None:
        """Add one frame of each (any float dtype, same length)."""
        n = max(1, far.size)
        if float(np.dot(far, far)) / n < self._far_floor:
            return
        a = self._alpha
        self._mic += a * (float(np.dot(mic, mic)) / n - self._mic)
        self._out += a * (float(np.dot(out, out)) / n - self._out)

    @property
    def erle_db(self) -> float:
        """0 until the far end has played."""
        if self._mic <= 0:
            return 0.0
        return 10.0 * float(np.log10((self._mic + _TINY) / (self._out + _TINY)))
