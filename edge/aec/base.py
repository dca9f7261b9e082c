"""The echo canceller interface the edge pipeline calls, and its settings.

The pipeline calls :meth:`EchoCanceller.process` once per 10 ms with the microphone frame
and the far-end frame: exactly the samples sent to the loudspeaker during the same 10 ms of
the mic's timeline (silence when nothing plays). The canceller finds the speaker -> mic
delay itself (GCC-PHAT) unless told; its output lags the mic by ``latency_samples``.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from edge.aec.erle import ErleMeter
from shared.audio import PROCESSING_RATE, Samples

if TYPE_CHECKING:
    from edge.aec.linear import LinearEchoStage
    from edge.aec.memory import LearnedEchoPath

FRAME_SAMPLES = 160  # 10 ms at 16 kHz
Kind = Literal["auto", "livekit", "numpy"]


@dataclass(frozen=True, slots=True)
class EchoSettings:
    """How the echo canceller runs.

    ``delay_ms``: the speaker -> mic delay if known (device latency); with
    ``estimate_delay`` it is only the starting point and the estimate takes over.
    ``max_delay_ms``: the longest delay the estimator looks for (USB and HDMI audio are
    typically 30-200 ms, Bluetooth speakers up to ~400 ms).
    ``track_drift``: follow the delay to a fraction of a sample, sliding the linear filter
    along: clock drift between the speaker and the mic (two devices on their own clocks),
    and jumps of a few samples (see :mod:`edge.aec.delay`); off, a 100 ppm drift costs
    ~15 dB of ERLE within seconds.
    ``tail_ms``: how much of the room response the linear filter models after the direct
    path. ``suppression``: residual echo over-estimation factor (higher removes more echo
    and more of the user's voice during double talk). ``nearend_dominance_db``: when the
    suppressor's input holds this much more than the predicted echo and noise explain (the user
    is talking over the echo), it suppresses gently (no over-estimation, no leak: see
    ``nearend_suppression``) for a few frames so the user's words are not notched; None
    always suppresses hard.
    ``nearend_suppression``: while the user dominates, the share of the predicted residual
    echo the suppressor removes (chosen when the prediction ran ~7 dB above what is left
    once the filter had converged: all of it notched the user's words, none let the echo
    into them; with the filter's transition at 0.99999 it runs ~4 dB under, and the linear
    stage scales it by 12 once settled: ``PREDICTION_SCALE`` in :mod:`edge.aec.linear`).
    ``echo_coherence_threshold``: the suppressor also counts as echo the share of its input
    that moves with the linear echo estimate (coherence above this, echo the filter
    mis-modelled while believing it had converged); None turns that off.
    ``asr_suppression`` / ``asr_floor_db``: how the recognizer's copy of the output is
    suppressed (over-estimation factor, deepest cut); 0, the default, gives it the linear
    stage's output untouched so the user's words over the agent's voice keep their shape;
    None gives the recognizer the clean output (see :mod:`edge.aec.suppressor`).
    ``late_reverb``: the clean output also suppresses the echo a long room keeps ringing
    after the linear filter's window, continuing the decay the filter has learned (see
    :mod:`edge.aec.reverb`; the recognizer's copy does not).
    ``shadow_filter`` (numpy implementation): run a fast shadow beside the linear Kalman
    filter and take the echo estimate per frequency bin from whichever has left less error
    lately (it catches up when the main filter is stuck on a misfit; see
    :mod:`edge.aec.shadow`).
    ``comfort_noise``: refill suppressed bins at the background noise level (off only to
    measure ERLE). The livekit
    implementation can add WebRTC noise suppression (``noise_suppression``) and AEC3
    (``webrtc_aec``) after our stages; both are off by default because both cut more of the
    user's words during double talk (``parley bench aec`` measures them).
    """

    kind: Kind = "auto"
    delay_ms: float | None = None
    estimate_delay: bool = True
    max_delay_ms: float = 500.0
    track_drift: bool = True
    tail_ms: float = 220.0
    suppression: float = 2.5
    suppression_floor_db: float = -40.0
    nearend_dominance_db: float | None = 6.0
    nearend_suppression: float = 0.3
    echo_coherence_threshold: float | None = 0.35
    asr_suppression: float | None = 0.0
    asr_floor_db: float = -20.0
    late_reverb: bool = True
    shadow_filter: bool = True
    comfort_noise: bool = True
    noise_suppression: bool = False
    webrtc_aec: bool = False


@dataclass(frozen=True, slots=True)
class Cancelled:
    """One frame out of the canceller, two ways (same timeline, same latency).

    ``clean``: no echo left that the VAD or a recognizer would take for speech; for the VAD,
    barge-in and the echo-cancelled recording. ``for_asr``: by default the linear stage's output,
    not suppressed, so the user's words talking over the agent keep their shape (a faint echo
    remains under them); decode it only where the VAD found speech on ``clean``.
    """

    clean: Samples
    for_asr: Samples


@dataclass(frozen=True, slots=True)
class EchoStats:
    """What a canceller reports: its delay estimate, running ERLE and output latency."""

    name: str
    delay_ms: float | None
    delay_estimated: bool
    erle_db: float
    frames: int
    latency_samples: int
    remembered_path: str = "none"  # see LinearEchoStage.remember: on probation, taken over...


class EchoCanceller(ABC):
    """Removes the loudspeaker's echo from the microphone, one 10 ms frame at a time.

    Not thread-safe; one instance per audio stream. Cheap enough to call from the audio
    loop (a fraction of a millisecond per frame).
    """

    name: str = "echo-canceller"
    latency_samples: int = 0

    def __init__(self) -> None:
        self._meter = ErleMeter()
        self._frames = 0

    def cancel(self, mic: Samples, far: Samples) -> Cancelled:
        """Cancel the echo in one mic frame.

        ``mic`` and ``far`` are ``FRAME_SAMPLES`` float32 samples on the same timeline. Returns
        ``FRAME_SAMPLES`` cleaned samples twice (see :class:`Cancelled`), delayed by
        ``latency_samples``. Non-finite input is zeroed and everything is clipped to [-1, 1],
        so bad input never poisons the state.
        """
        m, f = _sanitized(mic, "mic"), _sanitized(far, "far")
        clean, for_asr = (np.asarray(np.clip(x, -1.0, 1.0), dtype=np.float32)
                          for x in self._process(m, f))
        self._meter.update(m, clean, f)
        self._frames += 1
        return Cancelled(clean, for_asr)

    def process(self, mic: Samples, far: Samples) -> Samples:
        """:meth:`cancel`'s ``clean`` frame."""
        return self.cancel(mic, far).clean

    def reset(self) -> None:
        """Forget everything learned (echo path, delay, meters), e.g. after a device change."""
        self._meter.reset()
        self._frames = 0
        self._reset()

    def echo_path(self) -> LearnedEchoPath | None:
        """The echo path to start from after a restart (:meth:`remember`,
        :mod:`edge.aec.memory`): what the filter has learned, once it knows the delay and has
        heard a few seconds of far end; a remembered path still on probation; None before,
        or when this canceller has no linear filter (see
        :meth:`edge.aec.linear.LinearEchoStage.echo_path`)."""
        linear = self._linear_stage()
        return None if linear is None else linear.echo_path()

    def remember(self, echo: LearnedEchoPath) -> None:
        """Start again (as after :meth:`reset`) from an echo path learned before; it must
        prove itself on this room's echo before the suppressor relies on it (see
        :meth:`edge.aec.linear.LinearEchoStage.remember`)."""
        from edge.aec.memory import EchoMemoryError

        linear = self._linear_stage()
        if linear is None:
            raise EchoMemoryError(f"the {self.name} echo canceller has no linear filter to "
                                  "start from a remembered echo path")
        self.reset()
        linear.remember(echo)

    def _linear_stage(self) -> LinearEchoStage | None:
        return None

    @property
    def settled(self) -> bool:
        """True once the canceller has learned the room's echo path well enough that what it
        learns later changes little (see :attr:`edge.aec.linear.LinearEchoStage.settled`);
        a canceller with no linear filter learns nothing more and counts as settled."""
        linear = self._linear_stage()
        return linear is None or linear.settled

    def rewind(self, back: int, follow_delay: bool = True) -> None:
        """Get ready to cancel audio from ``back`` samples before now again, with what has
        been learned since (see :meth:`edge.aec.linear.LinearEchoStage.rewind`): a
        recording's second pass, or a replay (:meth:`replica`). Whatever is still in the
        canceller's latency belongs to the later audio: push ``latency_samples`` of silence
        first (:func:`cancel_recording` does). A canceller with no linear filter has nothing
        to rewind."""
        linear = self._linear_stage()
        if linear is not None:
            linear.rewind(back, follow_delay)

    def replica(self, back: int = 0) -> EchoCanceller:
        """An independent copy that cancels past audio again, from ``back`` samples before
        now, with what this canceller has learned by now (see :mod:`edge.aec.replay`). This
        canceller is not touched."""
        twin = copy.deepcopy(self)
        twin.rewind(back, follow_delay=False)
        return twin

    @property
    def stats(self) -> EchoStats:
        delay, linear = self._delay_samples(), self._linear_stage()
        return EchoStats(
            name=self.name, delay_ms=None if delay is None else 1000.0 * delay / PROCESSING_RATE,
            delay_estimated=self._delay_estimated(), erle_db=self._meter.erle_db,
            frames=self._frames, latency_samples=self.latency_samples,
            remembered_path="none" if linear is None else linear.remembered)

    @abstractmethod
    def _process(self, mic: np.ndarray, far: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One sanitized frame -> (clean, for the recognizer)."""

    @abstractmethod
    def _reset(self) -> None: ...

    @abstractmethod
    def _delay_samples(self) -> int | None: ...

    def _delay_estimated(self) -> bool:
        return False


def _sanitized(frame: Samples, what: str) -> np.ndarray:
    x = np.asarray(frame)
    if x.shape != (FRAME_SAMPLES,):
        raise ValueError(f"{what} frame must be {FRAME_SAMPLES} mono samples, got shape {x.shape}")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(x, -1.0, 1.0, out=x)


def cancel_signal(canceller: EchoCanceller, mic: Samples, far: Samples) -> Samples:
    """Run a whole recording through ``canceller``; the result is on the mic's timeline.

    ``far`` is what the speaker played, aligned with ``mic`` (shorter is padded with silence,
    longer is cut). The canceller's latency is removed, so sample ``i`` of the result is the
    cleaned sample ``i`` of ``mic``.
    """
    return cancel_recording(canceller, mic, far).clean


def cancel_recording(canceller: EchoCanceller, mic: Samples, far: Samples) -> Cancelled:
    """:func:`cancel_signal`, both outputs (each a whole recording on the mic's timeline)."""
    n, lat = mic.size, canceller.latency_samples
    frames = -(-(n + lat) // FRAME_SAMPLES)
    total = frames * FRAME_SAMPLES
    m = np.zeros(total, dtype=np.float32)
    m[:n] = mic
    f = np.zeros(total, dtype=np.float32)
    f[: min(n, far.size)] = far[:n]
    clean = np.empty(total, dtype=np.float32)
    for_asr = np.empty(total, dtype=np.float32)
    for i in range(frames):
        s = slice(i * FRAME_SAMPLES, (i + 1) * FRAME_SAMPLES)
        out = canceller.cancel(m[s], f[s])
        clean[s], for_asr[s] = out.clean, out.for_asr
    return Cancelled(clean[lat: lat + n], for_asr[lat: lat + n])
