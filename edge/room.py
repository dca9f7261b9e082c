"""Room acoustics for the echo tests, the AEC benchmark and the file-mode demo.

The loudspeaker plays the far end (the agent's voice); the sound reaches the microphone after
the device's bulk delay (buffers) through the room: a direct path, a few early reflections and
an exponentially decaying diffuse tail with a given RT60. The user talks through their own,
shorter room response, and background noise is added at a fixed level. Everything is at the
processing rate (16 kHz mono float32) and reproducible from a seed.

Two forms of the same path: :meth:`EchoPath.apply` for a whole signal, and
:meth:`EchoPath.push` frame by frame (the speaker frame played now -> the echo the mic hears
now), which the file-mode demo uses to put the speaker's sound back into the microphone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr
from scipy import signal

from shared.audio import PROCESSING_RATE, Samples

_LN_1000 = float(np.log(1000.0))  # 60 dB of amplitude decay


@dataclass(frozen=True, slots=True)
class RoomSpec:
    """One loudspeaker -> microphone path.

    ``delay_ms`` is when the direct path arrives (device buffering plus flight time);
    ``echo_gain_db`` is the energy gain of the whole path (echo level ~ speaker level + gain);
    ``drr_db`` the direct-to-reverberant energy ratio; ``drive`` > 0 adds loudspeaker soft
    clipping (tanh) of that strength; ``speaker_highpass_hz`` models a small driver;
    ``drift_ppm`` > 0 makes the speaker's clock run that much faster than the mic's (two
    devices, e.g. a USB mic and an HDMI speaker), so the delay shrinks as the sound plays
    (whole signals only: :meth:`EchoPath.apply`).
    """

    delay_ms: float = 60.0
    rt60_s: float = 0.4
    echo_gain_db: float = -3.0
    drr_db: float = 3.0
    reflections: int = 8
    drive: float = 0.0
    speaker_highpass_hz: float = 120.0
    seed: int = 0
    drift_ppm: float = 0.0

    @property
    def delay_samples(self) -> int:
        return round(self.delay_ms * PROCESSING_RATE / 1000.0)


def impulse_response(spec: RoomSpec, rate: int = PROCESSING_RATE) -> Samples:
    """The room impulse response from the loudspeaker signal to the mic (bulk delay included)."""
    rng = np.random.default_rng(spec.seed)
    start = spec.delay_ms * rate / 1000.0
    length = int(start + spec.rt60_s * rate) + 32
    direct = np.zeros(length)
    _add_fractional_tap(direct, start, 1.0)
    early = np.zeros(length)
    for _ in range(spec.reflections):
        at = start + rng.uniform(0.002, 0.040) * rate
        gain = rng.uniform(0.2, 0.6) * rng.choice((-1.0, 1.0)) * np.exp(-(at - start) / rate / 0.03)
        _add_fractional_tap(early, at, gain)
    t = np.arange(length) / rate - start / rate - 0.003
    envelope = np.where(t >= 0, np.exp(-_LN_1000 * np.maximum(t, 0.0) / spec.rt60_s), 0.0)
    tail = rng.standard_normal(length) * envelope
    tail = signal.lfilter([0.6], [1.0, -0.4], tail)  # walls absorb the highs a little
    reverb = early + tail * np.sqrt(np.sum(early**2) + 1e-3) / np.sqrt(np.sum(tail**2) + 1e-12)
    reverb *= np.sqrt(np.sum(direct**2) / np.sum(reverb**2) / 10 ** (spec.drr_db / 10))
    ir = direct + reverb
    ir *= 10 ** (spec.echo_gain_db / 20) / np.sqrt(np.sum(ir**2))
    return np.asarray(ir, dtype=np.float32)


def _add_fractional_tap(ir: np.ndarray, at: float, gain: float, half_width: int = 8) -> None:
    """Add a band-limited (windowed-sinc) impulse at a fractional sample position."""
    centre = int(np.floor(at))
    idx = np.arange(centre - half_width + 1, centre + half_width + 1)
    keep = (idx >= 0) & (idx < ir.size)
    taps = np.sinc(idx - at) * np.hanning(2 * half_width + 2)[1:-1]
    ir[idx[keep]] += gain * taps[keep]


class EchoPath:
    """Loudspeaker (high-pass, optional soft clipping) followed by the room response.

    Use :meth:`apply` for a whole signal, or :meth:`push` frame by frame: both give the same
    samples. ``push`` keeps the convolution tail between calls (overlap-add).
    """

    def __init__(self, spec: RoomSpec, rate: int = PROCESSING_RATE) -> None:
        self.spec = spec
        self.ir = impulse_response(spec, rate)
        self._sos = (signal.butter(2, spec.speaker_highpass_hz, "highpass", fs=rate, output="sos")
                     if spec.speaker_highpass_hz > 0 else None)
        self.reset()

    def reset(self) -> None:
        self._zi = None if self._sos is None else np.zeros((self._sos.shape[0], 2))
        self._pending = np.zeros(0, dtype=np.float64)

    def loudspeaker(self, played: Samples) -> np.ndarray:
        """What the driver radiates for ``played`` (stateful when called frame by frame)."""
        x = np.asarray(played, dtype=np.float64)
        if self._sos is not None:
            x, self._zi = signal.sosfilt(self._sos, x, zi=self._zi)
        if self.spec.drive > 0:
            x = np.tanh(self.spec.drive * x) / self.spec.drive
        return np.asarray(x)

    def apply(self, played: Samples) -> Samples:
        """The echo at the mic for a whole signal played from silence (same length)."""
        self.reset()
        x = self.loudspeaker(played)
        echo = signal.fftconvolve(x, self.ir)[: x.size]
        self.reset()
        if self.spec.drift_ppm:
            # The mic's sample n hears the room at the speaker's time n * (1 + drift).
            echo = soxr.resample(echo, PROCESSING_RATE * (1 + self.spec.drift_ppm * 1e-6),
                                 PROCESSING_RATE, quality="VHQ")
            echo = np.pad(echo, (0, max(0, x.size - echo.size)))[: x.size]
        return np.asarray(echo, dtype=np.float32)

    def push(self, played: Samples) -> Samples:
        """The echo that reaches the mic while ``played`` leaves the speaker (same length)."""
        if self.spec.drift_ppm:
            raise ValueError("clock drift is simulated over whole signals only (apply)")
        n = len(played)
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        full = signal.fftconvolve(self.loudspeaker(played), self.ir)
        full[: self._pending.size] += self._pending  # tails of earlier frames (overlap-add)
        self._pending = full[n:]
        return np.asarray(full[:n], dtype=np.float32)


class SimulatedMic:
    """A microphone in a room, frame by frame: the echo of what the speaker plays now, plus
    whatever the user says now, plus steady background noise at ``noise_db`` dBFS.

    The file-mode demo uses it to put the speaker's sound back into the mic.
    """

    def __init__(self, room: RoomSpec, noise_db: float = -65.0, seed: int = 0) -> None:
        self.path = EchoPath(room)
        self._noise_gain = 10 ** (noise_db / 20)
        self._rng = np.random.default_rng(seed)
        self._noise_state = 0.0

    def push(self, speaker: Samples, user: Samples | None = None) -> Samples:
        """The mic samples recorded while ``speaker`` plays (``user`` is the same length)."""
        mic = self.path.push(speaker).astype(np.float64)
        if user is not None:
            mic += np.asarray(user, dtype=np.float64)[: mic.size]
        white = self._rng.standard_normal(mic.size)
        pink, zf = signal.lfilter([1.0], [1.0, -0.9], white, zi=[self._noise_state])
        self._noise_state = float(zf[0])
        mic += pink * (self._noise_gain * np.sqrt(1 - 0.9**2))  # unit-variance pink noise
        return np.asarray(np.clip(mic, -1.0, 1.0), dtype=np.float32)


# --- test scenes -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scene:
    """A microphone recording with its parts known, for measuring an echo canceller.

    ``mic = echo + near + noise``; ``far`` is exactly what the speaker played, on the mic's
    timeline. ``far_only`` / ``double_talk`` / ``near_only`` are boolean masks over samples.
    ``near_dry`` is the user's speech before the room (the ASR reference), ``near_texts`` what
    the user said, ``near_spans`` where (sample ranges, on the mic timeline).
    """

    name: str
    room: RoomSpec
    far: Samples
    mic: Samples
    echo: Samples
    near: Samples
    near_dry: Samples
    noise: Samples
    far_only: np.ndarray
    double_talk: np.ndarray
    near_only: np.ndarray
    near_texts: tuple[str, ...] = ()
    near_spans: tuple[tuple[int, int], ...] = ()

    @property
    def seconds(self) -> float:
        return self.mic.size / PROCESSING_RATE


@dataclass(frozen=True, slots=True)
class SceneLevels:
    """Levels at the mic, dBFS RMS over active speech (the echo follows from the room gain),
    and when the user starts talking in a double-talk scene."""

    far_db: float = -24.0
    near_db: float = -30.0
    noise_db: float = -65.0
    near_start_s: float = 4.0


def random_room(seed: int) -> RoomSpec:
    """A room drawn from the ranges the acceptance asks for (delay 20-150 ms, RT60 0.2-0.6 s)."""
    rng = np.random.default_rng(10_000 + seed)
    return RoomSpec(delay_ms=float(rng.uniform(20, 150)), rt60_s=float(rng.uniform(0.2, 0.6)),
                    echo_gain_db=float(rng.uniform(-10, -2)), drr_db=float(rng.uniform(-2, 8)),
                    drive=float(rng.choice((0.0, 0.0, 1.5))), seed=seed)


def random_levels(seed: int) -> SceneLevels:
    """Levels drawn per seed: user -36..-26 dBFS, noise -68..-55 dBFS, user starts after
    1.5-4 s of the agent talking (early double talk meets a filter still converging)."""
    rng = np.random.default_rng(20_000 + seed)
    return SceneLevels(near_db=float(rng.uniform(-36, -26)), noise_db=float(rng.uniform(-68, -55)),
                       near_start_s=float(rng.uniform(1.5, 4.0)))


def _place(utterances: list[Samples], start_s: float,
           gaps_s: list[float]) -> tuple[Samples, list[tuple[int, int]]]:
    """Utterances one after another from ``start_s``, each followed by its gap."""
    pos = int(start_s * PROCESSING_RATE)
    pieces, spans = [np.zeros(pos, dtype=np.float32)], []
    for audio, gap in zip(utterances, gaps_s, strict=True):
        spans.append((pos, pos + audio.size))
        pieces += [audio, np.zeros(int(gap * PROCESSING_RATE), dtype=np.float32)]
        pos += audio.size + pieces[-1].size
    return np.concatenate(pieces), spans


def _scaled(x: Samples, db: float) -> Samples:
    """``x`` scaled so its RMS over active samples is ``db`` dBFS."""
    active = x[np.abs(x) > 1e-3 * float(np.max(np.abs(x)))] if np.any(x) else x[:0]
    if active.size == 0:
        return x
    return (x * (10 ** (db / 20) / float(np.sqrt(np.mean(np.square(active)))))).astype(np.float32)


def _fit(x: Samples, n: int) -> Samples:
    return np.pad(x, (0, max(0, n - x.size)))[:n].astype(np.float32)


def _pink_noise(n: int, rng: np.random.Generator) -> Samples:
    noise = signal.lfilter([1.0], [1.0, -0.9], rng.standard_normal(n))
    return np.asarray(noise / (np.std(noise) + 1e-12), dtype=np.float32)


SCENE_KINDS = ("far_only", "near_only", "double_talk")


def build_scene(kind: str, seed: int = 0, room: RoomSpec | None = None,
                levels: SceneLevels | None = None, far_voice: Samples | None = None) -> Scene:
    """One test scene: ``far_only``, ``near_only`` or ``double_talk``.

    ``far_only``: ~8 s of agent speech (3 eSpeak utterances with pauses), no user.
    ``near_only``: the user alone (2 utterances). ``double_talk``: the agent talks for ~8 s;
    from ``levels.near_start_s`` the user talks over it (2 utterances). ``far_voice``
    replaces the eSpeak far end (e.g. piper audio). Room and levels are drawn from the seed
    by default (:func:`random_room`, :func:`random_levels`).
    """
    from models.corpus import SENTENCES, espeak_utterances

    if kind not in SCENE_KINDS:
        raise ValueError(f"unknown scene kind {kind!r}; expected one of {SCENE_KINDS}")
    rng = np.random.default_rng(seed)
    room = room or random_room(seed)
    levels = levels or random_levels(seed)
    first = 5 * seed % len(SENTENCES)  # other sentences for every seed
    pool = espeak_utterances(5, seed=seed, sentences=SENTENCES[first:] + SENTENCES[:first])
    far_utts = [] if kind == "near_only" else (
        [u.audio for u in pool[:3]] if far_voice is None else [far_voice])
    near_utts = [] if kind == "far_only" else pool[3:5]
    far_sig, far_spans = _place(far_utts, 0.3, [float(rng.uniform(0.2, 0.6)) for _ in far_utts])
    near_sig, spans = _place([u.audio for u in near_utts],
                             0.5 if kind == "near_only" else levels.near_start_s,
                             [0.8, 0.6][: len(near_utts)])
    n = max(far_sig.size + int(room.rt60_s * PROCESSING_RATE), near_sig.size)
    far = _fit(_scaled(far_sig, levels.far_db), n)
    near_dry = _fit(near_sig, n)
    near_room = RoomSpec(delay_ms=1.0, rt60_s=room.rt60_s, echo_gain_db=0.0, drr_db=8.0,
                         speaker_highpass_hz=0.0, seed=seed + 1)
    near = _scaled(EchoPath(near_room).apply(near_dry), levels.near_db)
    echo = EchoPath(room).apply(far)
    noise = _pink_noise(n, rng) * np.float32(10 ** (levels.noise_db / 20))
    far_active = _span_mask(n, far_spans, room.delay_samples + int(room.rt60_s * 8000))
    near_active = _span_mask(n, spans, int(0.2 * PROCESSING_RATE))
    return Scene(
        name=f"{kind}-{seed}", room=room, far=far, mic=(echo + near + noise).astype(np.float32),
        echo=echo, near=near, near_dry=near_dry, noise=noise,
        far_only=far_active & ~near_active, double_talk=far_active & near_active,
        near_only=near_active & ~far_active,
        near_texts=tuple(u.text for u in near_utts), near_spans=tuple(spans))


def _span_mask(n: int, spans: list[tuple[int, int]], tail: int) -> np.ndarray:
    """True from the start of the first span to ``tail`` samples after the end of the last."""
    mask = np.zeros(n, dtype=bool)
    if spans:
        mask[spans[0][0]: spans[-1][1] + tail] = True
    return mask
