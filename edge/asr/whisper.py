"""Whisper through sherpa-onnx's ``OfflineRecognizer`` (the embedded default ASR).

Latency is what matters here: after the user stops, the final transcript should cost as
little as possible. The encoder built by ``models/whisper_onnx.py`` takes any number of
frames, so instead of Whisper's 30 s window (3000 frames, ~10x the work for a 3 s
utterance) an utterance is decoded with only ``tail_silence_s`` of digital silence after
it. Silence is appended as audio, so its log-mel frames are the ones Whisper was trained
with (OpenAI's front end pads the waveform), not the zero vectors sherpa-onnx pads with.
``full_window=True`` decodes in the reference 30 s window instead, exactly the input
faster-whisper gives the same weights (used to prove the conversion faithful).

A short window sometimes leaves the decoder without its end-of-text cue, and it starts the
utterance over: the text before the repetition is kept. A decode stuck otherwise (token
cap, Whisper's compression-ratio test) is redone with ``retry_tail_silence_s`` of silence,
and if still stuck in the 30 s window (rare; costs ~1 s).

Audio quieter than ``silence_floor_db`` everywhere gives empty text without decoding
(Whisper invents "Thank you." on silence); longer audio is split at quiet points.
"""

from __future__ import annotations

import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.asr.base import SpeechRecognizer, Transcript
from edge.asr.chunking import align_to_whisper_frames, is_silent, split_at_quiet_points
from shared.audio import PROCESSING_RATE, Samples
from shared.errors import ConfigError, EngineError
from shared.text import normalize_text

FULL_WINDOW_FRAMES = 3000
# sherpa-onnx keeps at most 2950 input frames of one decode (29.5 s).
MAX_DECODE_S = 29.0
HOP = 160
# sherpa-onnx stops a decode after (input frames / 100 * 6) tokens: 6 tokens per second.
TOKENS_PER_FRAME = 6 / 100
# Whisper's own test for a decoder stuck in a loop (OpenAI: compression_ratio_threshold).
LOOP_COMPRESSION_RATIO = 2.4


@dataclass(frozen=True, slots=True)
class WhisperConfig:
    """How the Whisper adapter decodes."""

    num_threads: int = 2
    # 1.2 s of silence is enough for the decoder's end-of-text cue on all but ~1% of turns
    # (those are decoded again with 2.5 s); it saves ~25 ms per decode against 2.5 s, at the
    # same word error rate on our sets (below 1 s, stuck decodes become frequent).
    tail_silence_s: float = 1.2
    retry_tail_silence_s: float = 2.5
    full_window: bool = False
    silence_floor_db: float = -50.0
    max_chunk_s: float = 24.0


class WhisperRecognizer(SpeechRecognizer):
    """Whisper tiny.en (encoder, kv-cache decoder, tokens) run by sherpa-onnx."""

    def __init__(self, files: dict[str, Path], config: WhisperConfig | None = None,
                 engine: str = "sherpa-onnx/whisper-tiny.en-int8") -> None:
        import sherpa_onnx

        self.config = config or WhisperConfig()
        self.engine = engine
        longest_tail = max(self.config.tail_silence_s, self.config.retry_tail_silence_s)
        if self.config.max_chunk_s + longest_tail > MAX_DECODE_S:
            raise ConfigError("whisper chunk plus tail silence must stay under "
                              f"{MAX_DECODE_S:.0f} s")
        # tail_paddings counts zero frames sherpa-onnx appends; it caps the total at 3000.
        tail = FULL_WINDOW_FRAMES if self.config.full_window else 1
        try:
            self._recognizer = sherpa_onnx.OfflineRecognizer.from_whisper(
                encoder=str(files["encoder"]), decoder=str(files["decoder"]),
                tokens=str(files["tokens"]), language="en", task="transcribe",
                num_threads=self.config.num_threads, tail_paddings=tail,
            )
        except (RuntimeError, ValueError) as exc:
            raise EngineError(f"sherpa-onnx could not load whisper from "
                              f"{files['encoder'].parent}: {exc}") from exc
        self._lock = threading.Lock()

    def transcribe(self, samples: Samples) -> Transcript:
        """Recognize one utterance or a long recording (split at quiet points)."""
        started = time.perf_counter()
        audio = np.nan_to_num(np.asarray(samples, dtype=np.float32).reshape(-1),
                              nan=0.0, posinf=0.0, neginf=0.0)
        texts = [self._decode(piece)
                 for piece in split_at_quiet_points(audio, self.config.max_chunk_s)]
        text = " ".join(t for t in texts if t)
        return Transcript(text=text, compute_s=time.perf_counter() - started,
                          engine=self.engine)

    def _decode(self, piece: Samples) -> str:
        if is_silent(piece, self.config.silence_floor_db):
            return ""
        audio = align_to_whisper_frames(piece)
        if self.config.full_window:
            return self._run(audio)[0]
        for tail_s in (self.config.tail_silence_s, self.config.retry_tail_silence_s):
            short = _with_silence(audio, audio.size / PROCESSING_RATE + tail_s)
            text, tokens = self._run(short)
            restarted = cut_repetition(text)
            if restarted:
                return restarted
            if not looks_stuck(text, tokens, short.size // HOP):
                return text
        # Stuck without a clean restart: decode again in Whisper's own 30 s window.
        return self._run(_with_silence(audio, MAX_DECODE_S))[0]

    def _run(self, audio: Samples) -> tuple[str, int]:
        """Text and token count of one decode."""
        with self._lock:
            stream = self._recognizer.create_stream()
            stream.accept_waveform(PROCESSING_RATE, audio)
            self._recognizer.decode_stream(stream)
            result = stream.result
            return str(result.text).strip(), len(result.tokens)


def _with_silence(audio: Samples, total_s: float) -> Samples:
    """``audio`` followed by digital silence up to ``total_s`` seconds."""
    missing = int(total_s * PROCESSING_RATE) - audio.size
    if missing <= 0:
        return audio
    return np.concatenate([audio, np.zeros(missing, np.float32)])


def looks_stuck(text: str, tokens: int, input_frames: int) -> bool:
    """True when a decode ran into sherpa-onnx's token cap or repeats itself.

    The cap (6 tokens per second of input) is only reached by a decoder that never emits
    end-of-text; a looping decoder also compresses well (Whisper's own criterion).
    """
    cap = int(input_frames * TOKENS_PER_FRAME)
    raw = text.encode("utf-8")
    ratio = len(raw) / len(zlib.compress(raw)) if raw else 0.0
    return tokens >= cap or ratio > LOOP_COMPRESSION_RATIO


def cut_repetition(text: str, min_words: int = 3) -> str:
    """The text up to where the decoder started saying it again, or "" if it did not.

    A short window can leave the decoder without its end-of-text cue, so it starts the
    utterance over ("Set a timer. Set a timer. Set a"); what came before the first
    repeated phrase (``min_words`` or more words said twice in a row) is the transcript.
    """
    words = text.split()
    keys = [normalize_text(w) for w in words]
    best = 0
    for n in range(min_words, len(words) // 2 + 1):
        for i in range(len(words) - 2 * n + 1):
            if keys[i:i + n] == keys[i + n:i + 2 * n] and any(keys[i:i + n]):
                best = i + n if not best else min(best, i + n)
                break
    return " ".join(words[:best])
