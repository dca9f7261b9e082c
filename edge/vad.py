"""Voice activity detection: sherpa-onnx silero VAD, streamed in 10 ms frames.

The adapter feeds 32 ms windows (512 samples at 16 kHz, plus the 64-sample context the v5
model expects) to ``sherpa_onnx.VadModel.is_speech``, whose hysteresis (``min_speech_s``,
``min_silence_s``) is configured here, and turns its flag stream into events stamped with
sample positions on the mic timeline.
"""

from __future__ import annotations

import abc
from collections import deque
from dataclasses import dataclass

import numpy as np

from shared.audio import PROCESSING_RATE, Samples, rms_db
from shared.errors import EngineError

WINDOW = 512  # silero v5 at 16 kHz
CONTEXT = 64
# Speech also ends after two quiet windows: this far below the loudest window of the stretch
# of speech, and within FLOOR_MARGIN_DB of the quietest window of the last FLOOR_WINDOWS (the
# room's floor, taken as no lower than FLOOR_MIN_DB: a real microphone always hears something),
# so the fading end of a word is not taken for silence. At 20 and 25 dB under the peak, quiet
# moments inside words ended speech often enough to cut more turns short.
QUIET_DB = 30.0
FLOOR_MARGIN_DB = 20.0
FLOOR_MIN_DB = -70.0
FLOOR_WINDOWS = 94  # 3 s


@dataclass(frozen=True, slots=True)
class VadConfig:
    """Thresholds of the detector (see README, "Tuning the edge")."""

    threshold: float = 0.5
    min_speech_s: float = 0.03
    min_silence_s: float = 0.1
    num_threads: int = 1
    # The model's speech probability stays high for ~100 ms after the last sound. Speech also
    # ends once ``quiet_windows`` windows in a row are ``quiet_db`` below the loudest window
    # of the stretch of speech and near the room's floor (see QUIET_DB; None: the model alone
    # decides).
    quiet_db: float | None = None
    quiet_windows: int = 2


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """Speech began; ``sample`` is the estimated onset on the mic timeline."""

    sample: int
    decided_at: int


@dataclass(frozen=True, slots=True)
class SpeechPausing:
    """The level fell: speech may have ended at ``sample``. A ``SpeechEnded`` with the same
    ``sample`` one window later confirms it; otherwise the user went on. Lets the edge start
    recognizing a window before the pause is certain."""

    sample: int
    decided_at: int


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    """Speech stopped; ``sample`` is the estimated end of speech (before the min silence)."""

    sample: int
    decided_at: int


VadEvent = SpeechStarted | SpeechPausing | SpeechEnded


class VoiceActivityDetector(abc.ABC):
    """Streaming VAD: push any number of samples, get the events they complete."""

    window: int = WINDOW

    def __init__(self, config: VadConfig) -> None:
        self.config = config
        self._pending = np.zeros(0, dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._position = 0  # samples consumed into windows
        self._speaking = False
        self._peak_db = -120.0  # loudest window of the current stretch of speech
        self._quiet_run = 0  # quiet windows in a row while speaking
        self._held = False  # ended by quiet: the model's lingering "speech" is not an onset
        self._levels: deque[float] = deque(maxlen=FLOOR_WINDOWS)

    @property
    def speaking(self) -> bool:
        return self._speaking

    def push(self, samples: Samples) -> list[VadEvent]:
        self._pending = np.concatenate([self._pending, np.asarray(samples, dtype=np.float32)])
        events: list[VadEvent] = []
        while self._pending.size >= self.window:
            chunk, self._pending = self._pending[: self.window], self._pending[self.window:]
            flag = self._is_speech(np.concatenate([self._context, chunk]))
            self._context = chunk[-CONTEXT:]
            self._position += self.window
            event = self._transition(self._with_quiet(flag, chunk)) or self._pausing()
            if event is not None:
                events.append(event)
        return events

    def _pausing(self) -> SpeechPausing | None:
        """The first quiet window of a run that may end speech at the next one."""
        if self._speaking and self._quiet_run == 1 and self.config.quiet_windows > 1:
            return SpeechPausing(sample=self._position - self.window, decided_at=self._position)
        return None

    def _with_quiet(self, flag: bool, chunk: Samples) -> bool | None:
        """The model's flag, overruled by the level: None ends speech at the quiet run."""
        quiet_db = self.config.quiet_db
        if quiet_db is None:
            return flag
        level = rms_db(chunk)
        self._levels.append(level)
        if self._held:  # after a quiet end, only a loud window (or the model letting go):
            # a noise window popping over the quiet line must not restart speech
            if not flag or level >= self._peak_db - quiet_db / 2:
                self._held = False
            return flag and not self._held
        if not (flag and self._speaking):
            self._peak_db = level if flag else -120.0
            self._quiet_run = 0
            return flag
        self._peak_db = max(self._peak_db, level)
        floor = max(min(self._levels), FLOOR_MIN_DB)
        quiet = level < min(self._peak_db - quiet_db, floor + FLOOR_MARGIN_DB)
        self._quiet_run = self._quiet_run + 1 if quiet else 0
        if self._quiet_run >= self.config.quiet_windows:
            self._held = True
            return None
        return True

    def _transition(self, flag: bool | None) -> VadEvent | None:
        now = self._position
        if flag and not self._speaking:
            self._speaking = True
            onset = now - 2 * self.window - int(self.config.min_speech_s * PROCESSING_RATE)
            return SpeechStarted(sample=max(0, onset), decided_at=now)
        if flag is None and self._speaking:  # the level fell and stayed down: it ended there
            self._speaking = False
            end = now - self._quiet_run * self.window
            self._quiet_run = 0
            return SpeechEnded(sample=max(0, end), decided_at=now)
        if not flag and self._speaking:
            self._speaking = False
            end = now - int(self.config.min_silence_s * PROCESSING_RATE) - self.window
            return SpeechEnded(sample=max(0, end), decided_at=now)
        return None

    def reset(self) -> None:
        self._pending = np.zeros(0, dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._position = 0
        self._speaking = False
        self._peak_db, self._quiet_run, self._held = -120.0, 0, False
        self._levels.clear()
        self._reset_model()

    @abc.abstractmethod
    def _is_speech(self, window_with_context: Samples) -> bool: ...

    @abc.abstractmethod
    def _reset_model(self) -> None: ...


def speech_onset(vad: VoiceActivityDetector, audio: Samples, at: int,
                 bridge_s: float = 0.15) -> int | None:
    """Where the speech going on at sample ``at`` of ``audio`` began, as ``vad`` (reset
    first) hears it; None when it hears none going on there. Speech broken by pauses shorter
    than ``bridge_s`` counts as one stretch."""
    vad.reset()
    bridge = int(bridge_s * PROCESSING_RATE)
    confirm = 3 * vad.window + int(vad.config.min_speech_s * PROCESSING_RATE)
    onset: int | None = None
    ended: int | None = None
    for event in vad.push(audio[: at + confirm]):
        if isinstance(event, SpeechStarted):
            if onset is None or ended is None or event.sample - ended > bridge:
                onset = event.sample
            ended = None
        elif isinstance(event, SpeechEnded):
            ended = event.sample
    if onset is None or onset >= at or (ended is not None and at - ended > bridge):
        return None
    return onset


class SileroVad(VoiceActivityDetector):
    """The embedded silero model run by sherpa-onnx."""

    def __init__(self, config: VadConfig | None = None, model_path: str | None = None) -> None:
        super().__init__(config or VadConfig())
        import sherpa_onnx

        from models import registry

        path = model_path or str(registry.model_file(registry.default_spec("vad").name))
        cfg = sherpa_onnx.VadModelConfig()
        cfg.silero_vad.model = path
        cfg.silero_vad.threshold = self.config.threshold
        cfg.silero_vad.min_silence_duration = self.config.min_silence_s
        cfg.silero_vad.min_speech_duration = self.config.min_speech_s
        cfg.silero_vad.window_size = WINDOW
        cfg.sample_rate = PROCESSING_RATE
        cfg.num_threads = self.config.num_threads
        if not cfg.validate():
            raise EngineError(f"invalid silero VAD configuration for {path}")
        self._model = sherpa_onnx.VadModel.create(cfg)

    def _is_speech(self, window_with_context: Samples) -> bool:
        return bool(self._model.is_speech(window_with_context))

    def _reset_model(self) -> None:
        self._model.reset()
