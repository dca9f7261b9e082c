"""The linear echo canceller: a partitioned-block frequency-domain Kalman filter.

Frames of ``N`` samples, FFTs of ``2N`` (overlap-save), ``P`` partitions of ``N`` taps: the
filter models ``P * N`` samples of the echo path from where the far-end history is read (the
delay estimator puts that point just before the direct path). The state-space form (after
Kuech, Mabande and Enzner, 2014) gives each bin and partition its own step size from how
uncertain that coefficient still is, so it starts fast from a cold start and, because the
user's voice shows up as observation noise, slows down by itself during double talk.

The uncertainty also predicts how much echo is still left after the filter
(:attr:`KalmanEchoFilter.residual_power`); the residual echo suppressor uses that, so it
suppresses hard while the filter is still learning and lets the user's voice through once it
has converged, without a double-talk detector.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.audio import Samples


class FarEndSpectra:
    """Ring buffer of the spectra of the far end's last ``2N`` samples, one per frame.

    Partition ``p`` of a filter aligned ``delay`` frames back reads the spectrum pushed
    ``delay + p`` frames ago, so changing the alignment is only an index change.
    """

    def __init__(self, frame: int, depth: int) -> None:
        self.frame, self.depth = frame, depth
        self.reset()

    def reset(self) -> None:
        self._spectra = np.zeros((self.depth, self.frame + 1), dtype=np.complex128)
        self._power = np.zeros((self.depth, self.frame + 1), dtype=np.float64)
        self._last = np.zeros(self.frame, dtype=np.float64)
        self._head = 0

    def push(self, far: Samples) -> None:
        x = np.asarray(far, dtype=np.float64)
        spectrum = np.fft.rfft(np.concatenate([self._last, x]))
        self._last = x
        self._head = (self._head + 1) % self.depth
        self._spectra[self._head] = spectrum
        self._power[self._head] = spectrum.real**2 + spectrum.imag**2

    def window(self, delay: int, partitions: int) -> tuple[np.ndarray, np.ndarray]:
        """Spectra and powers, shape ``(P, N + 1)``, for partitions read ``delay`` frames back."""
        idx = (self._head - delay - np.arange(partitions)) % self.depth
        return self._spectra[idx], self._power[idx]


@dataclass(frozen=True, slots=True)
class FilterOutput:
    """One frame through the linear stage (time domain, ``N`` samples each)."""

    error: np.ndarray  # the mic minus the echo estimate
    echo: np.ndarray   # the echo estimate


class KalmanEchoFilter:
    """Partitioned-block frequency-domain Kalman filter (diagonal approximation).

    ``transition`` is how much the echo path is expected to change between frames (the
    coefficients' random walk, and a shrink toward zero, per 10 ms). A room holds still: at
    0.9995 the filter kept forgetting through the far end's pauses and stayed noisy, capped
    at ~35 dB of ERLE with no noise at all and ~31 dB over -65 dBFS of noise (room 10 of the
    bench, converged); 0.99999 gives 54 and 43 dB. Fast changes are the shadow filter's job
    (:mod:`edge.aec.shadow`), and a path that moved resets the uncertainty (:meth:`doubt`);
    ``initial_uncertainty`` the prior power of the first partition's coefficients (the
    prior decays by ``decay_per_partition`` per partition, as room responses do);
    ``noise_smoothing`` how slowly the observation noise (what the echo model cannot explain:
    the user's voice, background noise) is tracked. After :meth:`process`,
    ``echo_spectrum`` and ``error_power`` hold that frame's echo estimate (before the inverse
    FFT) and error power spectrum.
    """

    def __init__(self, frame: int = 160, partitions: int = 24, transition: float = 0.99999,
                 initial_uncertainty: float = 2.0, decay_per_partition: float = 0.9,
                 noise_smoothing: float = 0.5) -> None:
        self.frame, self.partitions = frame, partitions
        self._a = transition
        self._prior = initial_uncertainty * decay_per_partition ** np.arange(partitions)
        self._smoothing = noise_smoothing
        self.reset()

    def reset(self) -> None:
        bins = self.frame + 1
        self._w = np.zeros((self.partitions, bins), dtype=np.complex128)
        self._p = np.repeat(self._prior[:, None], bins, axis=1)
        self._noise = np.zeros(bins)
        self.residual_power = np.zeros(bins)
        self.echo_spectrum = np.zeros(bins, dtype=np.complex128)
        self.error_power = np.zeros(bins)

    def shift(self, frames: int) -> None:
        """Follow the far-end read point moving ``frames`` later (earlier if negative).

        Coefficients that still fall inside the filter keep what they learned; the
        partitions shifted in start again from the prior.
        """
        if frames == 0:
            return
        keep = np.arange(self.partitions) + frames
        inside = (keep >= 0) & (keep < self.partitions)
        w = np.zeros_like(self._w)
        p = np.repeat(self._prior[:, None], self.frame + 1, axis=1)
        w[inside], p[inside] = self._w[keep[inside]], self._p[keep[inside]]
        self._w, self._p = w, p

    @property
    def coefficient_power(self) -> np.ndarray:
        """``|W|^2`` per partition and bin: how much of the echo each partition carries."""
        return np.asarray(self._w.real**2 + self._w.imag**2)

    @property
    def response(self) -> np.ndarray:
        """The learned echo path as one impulse response (``P * N`` taps from the read point)."""
        return np.fft.irfft(self._w, axis=1)[:, : self.frame].reshape(-1)

    def slide(self, samples: float) -> None:
        """Move the learned echo path ``samples`` later (a fraction of a sample; earlier if
        negative), as clock drift moves the real one.

        The partitions are joined into one impulse response, delayed by a phase ramp, and cut
        into partitions again: exact below the top bin (8 kHz, which a real-valued fractional
        delay cannot keep) for what stays inside the window (what slides past either end is
        dropped). How sure the filter is does not change.
        """
        n = self.frame
        taps = self.response
        size = 1 << int(np.ceil(np.log2(taps.size + 2 * n)))  # room to slide both ways
        ramp = np.exp(-2j * np.pi * np.fft.rfftfreq(size) * samples)
        moved = np.fft.irfft(np.fft.rfft(taps, size) * ramp, size)[: taps.size]
        self._w = np.fft.rfft(moved.reshape(self.partitions, n), 2 * n, axis=1)

    def doubt(self) -> None:
        """Forget how sure the filter is (not what it learned): after the echo path moved."""
        self._p = np.maximum(self._p, self._prior[:, None])

    @property
    def coefficients(self) -> np.ndarray:
        """The learned echo path, per partition and bin (a copy)."""
        return self._w.copy()

    @property
    def uncertainty(self) -> np.ndarray:
        """How unsure the filter is of each coefficient (a copy)."""
        return self._p.copy()

    def load(self, coefficients: np.ndarray, uncertainty: np.ndarray) -> None:
        """Go on from an echo path learned before: ``coefficients``, and ``uncertainty`` (how
        sure the filter was of them)."""
        self.reset()
        self._w = np.array(coefficients, dtype=np.complex128)
        self._p = np.array(uncertainty, dtype=np.float64)

    def adopt(self, other: KalmanEchoFilter) -> None:
        """Take ``other``'s coefficients (same shape), keeping this filter's uncertainty."""
        self._w = other._w.copy()

    def predict(self, mic: np.ndarray, spectra: np.ndarray) -> FilterOutput:
        """Cancel one frame with the echo path as it stands, learning nothing from it."""
        self.echo_spectrum = np.sum(self._w * spectra, axis=0)
        echo = np.fft.irfft(self.echo_spectrum)[self.frame:]
        return FilterOutput(error=mic - echo, echo=echo)

    def process(self, mic: np.ndarray, spectra: np.ndarray, power: np.ndarray) -> FilterOutput:
        """Cancel one frame and learn from it; ``spectra``/``power`` come from
        :meth:`FarEndSpectra.window`."""
        n = self.frame
        out = self.predict(mic, spectra)
        err = out.error
        e = np.fft.rfft(np.concatenate([np.zeros(n), err]))
        e_power = self.error_power = e.real**2 + e.imag**2
        # Expected residual echo power in the error spectrum: half of sum(P |X|^2), because
        # the error block fills half of the FFT window.
        predicted = 0.5 * np.sum(self._p * power, axis=0)
        excess = np.maximum(e_power - predicted, 0.0)  # what the echo model cannot explain
        self._noise += (1 - self._smoothing) * (excess - self._noise)
        gain = self._p / (2.0 * predicted + 2.0 * self._noise + 1e-10)
        update = np.fft.irfft(gain * np.conj(spectra) * e, axis=1)
        update[:, n:] = 0.0  # keep each partition to N causal taps
        a = self._a
        self._w = a * (self._w + np.fft.rfft(update, axis=1))
        self._p = a * a * (1 - 0.5 * gain * power) * self._p + (1 - a * a) * (
            self._w.real**2 + self._w.imag**2)
        self.residual_power = predicted
        return out
