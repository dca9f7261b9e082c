"""A streaming zipformer transducer through sherpa-onnx's ``OnlineRecognizer`` (production path).

Partial text is available after every chunk the encoder consumes, and sherpa-onnx's own
endpoint rules (trailing silence after speech, or without speech, or a maximum length)
decide where an utterance ends. The model files come from ``parley models fetch NAME``
(encoder, decoder, joiner, tokens).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.asr.base import SpeechRecognizer, StreamingRecognizer, Transcript, WordTiming
from shared.audio import PROCESSING_RATE, Samples
from shared.errors import EngineError

WORD_STARTS = ("\u2581", " ")  # sentencepiece's word-boundary mark, as-is or as a space


@dataclass(frozen=True, slots=True)
class StreamingConfig:
    """Decoding threads and the endpoint rules (seconds)."""

    num_threads: int = 2
    trailing_silence_after_speech_s: float = 0.6
    trailing_silence_without_speech_s: float = 2.4
    max_utterance_s: float = 20.0
    flush_silence_s: float = 0.4


class ZipformerStreamingRecognizer(StreamingRecognizer):
    """One utterance at a time through a zipformer transducer."""

    def __init__(self, files: dict[str, Path], config: StreamingConfig | None = None,
                 engine: str = "sherpa-onnx/zipformer-transducer") -> None:
        import sherpa_onnx

        self.config = c = config or StreamingConfig()
        self.engine = engine
        try:
            self._recognizer = sherpa_onnx.OnlineRecognizer.from_transducer(
                tokens=str(files["tokens"]), encoder=str(files["encoder"]),
                decoder=str(files["decoder"]), joiner=str(files["joiner"]),
                num_threads=c.num_threads, sample_rate=PROCESSING_RATE, feature_dim=80,
                enable_endpoint_detection=True,
                rule1_min_trailing_silence=c.trailing_silence_without_speech_s,
                rule2_min_trailing_silence=c.trailing_silence_after_speech_s,
                rule3_min_utterance_length=c.max_utterance_s,
            )
        except (KeyError, RuntimeError, ValueError) as exc:
            raise EngineError(f"sherpa-onnx could not load the streaming transducer: {exc}") \
                from exc
        self._stream = self._recognizer.create_stream()
        self._compute_s = 0.0
        self._utterance_samples = 0

    def accept_waveform(self, samples: Samples) -> None:
        audio = np.asarray(samples, dtype=np.float32).reshape(-1)
        if audio.size == 0:
            return
        started = time.perf_counter()
        self._stream.accept_waveform(PROCESSING_RATE, audio)
        self._utterance_samples += audio.size
        self._decode_ready()
        self._compute_s += time.perf_counter() - started

    def partial_text(self) -> str:
        return str(self._recognizer.get_result(self._stream)).strip()

    def endpoint_detected(self) -> bool:
        return bool(self._recognizer.is_endpoint(self._stream))

    def final(self) -> Transcript:
        """Push a little silence so the last chunk is decoded, then read the result."""
        started = time.perf_counter()
        flush = np.zeros(int(self.config.flush_silence_s * PROCESSING_RATE), np.float32)
        self._stream.accept_waveform(PROCESSING_RATE, flush)
        self._decode_ready()
        result = self._recognizer.get_result_all(self._stream)
        self._compute_s += time.perf_counter() - started
        words = words_from_tokens(list(result.tokens), list(result.timestamps),
                                  self._utterance_samples / PROCESSING_RATE)
        return Transcript(text=str(result.text).strip(), words=words,
                          compute_s=self._compute_s, engine=self.engine)

    def reset(self) -> None:
        self._recognizer.reset(self._stream)
        self._compute_s = 0.0
        self._utterance_samples = 0

    def restart(self) -> None:
        self._stream = self._recognizer.create_stream()
        self._compute_s = 0.0
        self._utterance_samples = 0

    def _decode_ready(self) -> None:
        while self._recognizer.is_ready(self._stream):
            self._recognizer.decode_stream(self._stream)


def words_from_tokens(tokens: Sequence[str], starts: Sequence[float],
                      end_s: float) -> tuple[WordTiming, ...]:
    """Join BPE tokens into words; a word ends where the next one starts (or at ``end_s``)."""
    spans: list[tuple[str, float]] = []
    for token, start in zip(tokens, starts, strict=False):
        if token.startswith(WORD_STARTS) or not spans:
            spans.append((token.lstrip("".join(WORD_STARTS)), float(start)))
        else:
            spans[-1] = (spans[-1][0] + token, spans[-1][1])
    words = []
    for i, (word, start) in enumerate(spans):
        end = spans[i + 1][1] if i + 1 < len(spans) else max(end_s, start)
        if word.strip():
            words.append(WordTiming(word=word.strip()[:64], start_s=max(0.0, start),
                                    end_s=max(start, end)))
    return tuple(words)


class StreamingAsOffline(SpeechRecognizer):
    """A ``SpeechRecognizer`` over a streaming one: feed everything, then take the final."""

    def __init__(self, streaming: StreamingRecognizer, block_s: float = 0.1) -> None:
        self.streaming = streaming
        self.engine = streaming.engine
        self._block = max(1, int(block_s * PROCESSING_RATE))

    def transcribe(self, samples: Samples) -> Transcript:
        started = time.perf_counter()
        self.streaming.restart()
        texts: list[str] = []
        words: list[WordTiming] = []
        audio = np.asarray(samples, dtype=np.float32).reshape(-1)
        for begin in range(0, audio.size, self._block):
            self.streaming.accept_waveform(audio[begin: begin + self._block])
            if self.streaming.endpoint_detected():
                texts.append(self.streaming.final().text)
                self.streaming.reset()
        last = self.streaming.final()
        self.streaming.reset()
        texts.append(last.text)
        words.extend(last.words)
        return Transcript(text=" ".join(t for t in texts if t), words=tuple(words),
                          compute_s=time.perf_counter() - started, engine=self.engine)
