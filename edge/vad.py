"""Voice activity detection: sherpa-onnx silero VAD, streamed in 10 ms frames.

The adapter feeds 32 ms windows (512 samples at 16 kHz, plus the 64-sample context the v5
model expects) to ``sherpa_onnx.VadModel.is_speech``, whose hysteresis (``min_speech_s``,
``min_silence_s``) is configured here, and turns its flag stream into events stamped with
sample positions on the mic timeline.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from shared.audio import PROCESSING_RATE, Samples
from shared.errors import EngineError

WINDOW = 512  # silero v5 at 16 kHz
CONTEXT = 64


@dataclass(frozen=True, slots=True)
class VadConfig:
    """Thresholds of the detector (see README, "Tuning the edge")."""

    threshold: float = 0.5
    min_speech_s: float = 0.03
    min_silence_s: float = 0.1
    num_threads: int = 1


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """Speech began; ``sample`` is the estimated onset on the mic timeline."""

    sample: int
    decided_at: int


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    """Speech stopped; ``sample`` is the estimated end of speech (before the min silence)."""

    sample: int
    decided_at: int


VadEvent = SpeechStarted | SpeechEnded


class VoiceActivityDetector(abc.ABC):
    """Streaming VAD: push any number of samples, get the events they complete."""

    window: int = WINDOW

    def __init__(self, config: VadConfig) -> None:
        self.config = config
        self._pending = np.zeros(0, dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._position = 0  # samples consumed into windows
        self._speaking = False

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
            event = self._transition(flag)
            if event is not None:
                events.append(event)
        return events

    def _transition(self, flag: bool) -> VadEvent | None:
        now = self._position
        if flag and not self._speaking:
            self._speaking = True
            onset = now - 2 * self.window - int(self.config.min_speech_s * PROCESSING_RATE)
            return SpeechStarted(sample=max(0, onset), decided_at=now)
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
        self._reset_model()

    @abc.abstractmethod
    def _is_speech(self, window_with_context: Samples) -> bool: ...

    @abc.abstractmethod
    def _reset_model(self) -> None: ...


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
