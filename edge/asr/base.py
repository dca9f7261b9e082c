"""The two speech recognition interfaces of the edge, and what they return.

``SpeechRecognizer`` decodes a whole utterance at once (Whisper); ``StreamingRecognizer``
follows the audio as it arrives and decides itself where an utterance ends (a transducer).
Both are blocking: the edge pipeline calls them from one worker thread. Fakes in tests
subclass these, so they behave like the real adapters as far as the pipeline can tell.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from shared.audio import PROCESSING_RATE, Samples
from shared.protocol import WordTiming

__all__ = ["SpeechRecognizer", "StreamingRecognizer", "Transcript", "WordTiming"]


@dataclass(frozen=True, slots=True)
class Transcript:
    """What was said: the text, word timings when the engine gives them, and the cost."""

    text: str
    words: tuple[WordTiming, ...] = ()
    compute_s: float = 0.0
    engine: str = ""


class SpeechRecognizer(abc.ABC):
    """Offline recognition of one utterance (or a whole file) sampled at 16 kHz."""

    engine: str = "unknown"
    sample_rate: int = PROCESSING_RATE

    @abc.abstractmethod
    def transcribe(self, samples: Samples) -> Transcript:
        """Recognize ``samples`` (float32 mono at 16 kHz). Silence gives empty text."""


class StreamingRecognizer(abc.ABC):
    """Incremental recognition with the engine's own endpointing.

    Push audio with ``accept_waveform``; read ``partial_text`` at any time; when
    ``endpoint_detected`` turns true, ``final`` gives the utterance and ``reset`` starts the
    next one. ``final`` may also be called early (the caller decided the turn is over).
    """

    engine: str = "unknown"
    sample_rate: int = PROCESSING_RATE

    @abc.abstractmethod
    def accept_waveform(self, samples: Samples) -> None:
        """Feed more audio (float32 mono at 16 kHz) and decode what is ready."""

    @abc.abstractmethod
    def partial_text(self) -> str:
        """The current hypothesis of the utterance in progress."""

    @abc.abstractmethod
    def endpoint_detected(self) -> bool:
        """True once the engine's endpoint rules say the utterance has ended."""

    @abc.abstractmethod
    def final(self) -> Transcript:
        """Flush the utterance in progress and return its transcript (call ``reset`` next)."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget the current utterance and start listening for the next one."""

    def restart(self) -> None:
        """Start over on unrelated audio (a new file): no state carries over at all."""
        self.reset()
