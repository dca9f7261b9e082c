"""Speech synthesis: the ``SpeechSynthesizer`` interface and the piper voice on sherpa-onnx.

Text -> eSpeak NG IPA (``cloud.engines.espeak.phonemize``, one string per sentence, punctuation
kept for pauses and intonation) -> piper VITS through ``sherpa_onnx.OfflineTts`` with
``GenerationConfig.phoneme_codepoints``. Synthesis is blocking: the cloud calls it clause by
clause from a worker thread. Audio comes out sentence by sentence (``stream``) so the first
sentence can play while the next is made, and a ``should_continue`` callable, checked before
each sentence, stops the work on a barge-in.
"""

from __future__ import annotations

import json
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from cloud.engines import espeak
from shared.audio import Samples
from shared.errors import ConfigError, EngineError, ModelNotReadyError

log = logging.getLogger(__name__)

ShouldContinue = Callable[[], bool]

# Longer text is refused (about four minutes of speech); the cloud sends clauses.
MAX_TEXT_CHARS = 4000
# A sentence with more phonemes than this is cut at a comma (else a space): each chunk is at
# most ~8 s of speech, ~1 s of compute here, so cancellation and first audio stay quick.
MAX_CHUNK_PHONEMES = 160
MIN_SPEED, MAX_SPEED = 0.5, 2.0
# Silence after each sentence, as piper itself adds (the voice's own pause is often < 0.1 s).
SENTENCE_SILENCE_S = 0.2
# Piper pads each chunk with ~40-60 ms of silence in front (heard as latency on the first
# clause) and ~150-260 ms behind; keep this much of each (silence: below -40 dBFS).
KEEP_LEAD_S = 0.015
KEEP_TAIL_S = 0.12
SILENCE_LEVEL = 0.01
WARM_UP_TEXT = "Hello, how can I help?"


class SpeechTextError(ConfigError):
    """The text cannot be synthesized as given (too long)."""


class SpeechSynthesizer(ABC):
    """Text -> float32 mono speech at ``sample_rate``. Blocking; call it off the event loop."""

    @property
    @abstractmethod
    def sample_rate(self) -> int:
        """Sample rate of the audio this synthesizer returns."""

    @abstractmethod
    def stream(
        self, text: str, speed: float = 1.0, should_continue: ShouldContinue | None = None
    ) -> Iterator[Samples]:
        """Speech of ``text``, one chunk per sentence (or part of a long one), as each is made.

        ``speed`` > 1 speaks faster. ``should_continue`` is called before each chunk; when it
        returns False the stream ends. Text with nothing speakable yields nothing; text longer
        than ``MAX_TEXT_CHARS`` raises ``SpeechTextError``.
        """

    def synthesize(
        self, text: str, speed: float = 1.0, should_continue: ShouldContinue | None = None
    ) -> Samples:
        """All of ``stream`` joined; empty when there is nothing to say or it was cancelled."""
        chunks = list(self.stream(text, speed, should_continue))
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)

    def warm_up(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Pay one-time costs (first inference) before the first real request."""


@dataclass(frozen=True, slots=True)
class PhonemeInventory:
    """The phonemes a piper voice knows (its ``tokens.txt``); others are dropped."""

    symbols: frozenset[str]

    @classmethod
    def from_tokens_file(cls, path: Path) -> PhonemeInventory:
        symbols = set()
        for line in path.read_text(encoding="utf-8").splitlines():
            symbol = line[0] if line else ""
            if symbol and line[1:].strip().isdigit():
                symbols.add(symbol)
        return cls(frozenset(symbols))

    def keep_known(self, ipa: str) -> tuple[str, int]:
        """``ipa`` without the characters the voice lacks, and how many were dropped."""
        kept = "".join(c for c in ipa if c in self.symbols)
        return kept, len(ipa) - len(kept)


def check_text(text: str) -> None:
    """``SpeechTextError`` (one line) when ``text`` is longer than ``MAX_TEXT_CHARS``."""
    if len(text) > MAX_TEXT_CHARS:
        raise SpeechTextError(
            f"the text is {len(text)} characters long; speech synthesis takes at most "
            f"{MAX_TEXT_CHARS} at a time (send it sentence by sentence)"
        )


def check_speed(speed: float) -> float:
    """``speed`` clamped to what the voice does well; ``ConfigError`` for nonsense."""
    if not math.isfinite(speed) or speed <= 0:
        raise ConfigError(f"speech speed must be a positive number, not {speed}")
    return min(MAX_SPEED, max(MIN_SPEED, float(speed)))


def split_long(ipa: str, limit: int = MAX_CHUNK_PHONEMES) -> list[str]:
    """Cut a long phoneme string at the last comma (else space) before ``limit``."""
    parts: list[str] = []
    while len(ipa) > limit:
        head = ipa[:limit]
        cut = max(head.rfind(", "), head.rfind("; ")) + 1 or head.rfind(" ")
        cut = cut if cut > 0 else limit
        parts.append(ipa[:cut].strip())
        ipa = ipa[cut:].strip()
    if ipa:
        parts.append(ipa)
    return [p for p in parts if p]


def phoneme_chunks(text: str, voice: str, inventory: PhonemeInventory) -> list[str]:
    """The IPA strings to synthesize for ``text``, in order (empty when nothing is speakable)."""
    check_text(text)
    chunks: list[str] = []
    skipped = 0
    for sentence in espeak.phonemize(text, voice):
        known, dropped = inventory.keep_known(sentence)
        skipped += dropped
        if any(c.isalpha() for c in known):  # punctuation alone makes no speech
            chunks.extend(split_long(known))
    if skipped:
        log.debug("dropped %d phoneme characters the voice does not know", skipped)
    return chunks


class PiperSynthesizer(SpeechSynthesizer):
    """A piper VITS voice (built by ``models/piper_voice.py``) run by sherpa-onnx."""

    def __init__(self, model: Path, tokens: Path, config: Path, num_threads: int = 2,
                 pause_scale: float = 1.0) -> None:
        """``pause_scale`` shortens (< 1) the voice's own pauses at commas and sentence ends;
        sherpa-onnx's default of 0.2 makes clauses run together, so 1.0 keeps piper's."""
        if not 0.01 <= pause_scale <= 10:
            raise ConfigError(f"pause_scale must be within 0.01..10, not {pause_scale}")
        self.pause_scale = pause_scale
        for path in (model, tokens, config):
            if not path.is_file():  # sherpa-onnx exits the process on a missing file
                raise ModelNotReadyError(f"piper voice file missing: {path}")
        settings = _read_voice_config(config)
        self.voice = str(settings.get("espeak", {}).get("voice", "en-us"))
        self.inventory = PhonemeInventory.from_tokens_file(tokens)
        self._tts = _load_offline_tts(model, tokens, settings.get("inference", {}), num_threads)
        self._sample_rate = int(self._tts.sample_rate)

    @classmethod
    def from_registry(cls, name: str | None = None, num_threads: int = 2) -> PiperSynthesizer:
        """The named voice of the manifest (default: the default ``tts`` model)."""
        from models import registry

        spec = registry.spec(name) if name else registry.default_spec("tts")
        if spec.kind != "tts":
            raise ConfigError(f"model '{spec.name}' is a {spec.kind} model, not a voice")
        files = registry.model_files(spec.name)
        return cls(files["model"], files["tokens"], files["config"], num_threads=num_threads)

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    def stream(
        self, text: str, speed: float = 1.0, should_continue: ShouldContinue | None = None
    ) -> Iterator[Samples]:
        speed = check_speed(speed)  # bad input fails here, not at the first next()
        chunks = phoneme_chunks(text, self.voice, self.inventory)
        return self._speak(chunks, speed, should_continue)

    def _speak(
        self, chunks: list[str], speed: float, should_continue: ShouldContinue | None
    ) -> Iterator[Samples]:
        pause = np.zeros(round(SENTENCE_SILENCE_S / speed * self.sample_rate), dtype=np.float32)
        for ipa in chunks:
            if should_continue is not None and not should_continue():
                return
            audio = trim_silence(self._generate(ipa, speed), self.sample_rate)
            yield np.concatenate([audio, pause]) if ipa[-1] in ".!?" else audio

    def warm_up(self) -> None:
        started = time.perf_counter()
        self.synthesize(WARM_UP_TEXT)
        log.debug("tts warm-up took %.0f ms", (time.perf_counter() - started) * 1000)

    def _generate(self, ipa: str, speed: float) -> Samples:
        import sherpa_onnx

        config = sherpa_onnx.GenerationConfig()
        config.speed = speed
        config.silence_scale = self.pause_scale
        config.phoneme_codepoints = [[ord(c) for c in ipa]]
        try:
            audio = self._tts.generate("", config)
        except RuntimeError as exc:
            raise EngineError(f"piper synthesis failed: {exc}") from exc
        return np.asarray(audio.samples, dtype=np.float32)


def trim_silence(audio: Samples, sample_rate: int) -> Samples:
    """``audio`` with its leading and trailing silence cut to KEEP_LEAD_S / KEEP_TAIL_S."""
    loud = np.flatnonzero(np.abs(audio) > SILENCE_LEVEL)
    if loud.size == 0:
        return audio
    start = max(0, int(loud[0]) - round(KEEP_LEAD_S * sample_rate))
    end = min(audio.size, int(loud[-1]) + 1 + round(KEEP_TAIL_S * sample_rate))
    return audio[start:end]


@cache
def default_piper(num_threads: int = 2) -> PiperSynthesizer:
    """The manifest's default voice, loaded once per process (and per thread count)."""
    return PiperSynthesizer.from_registry(num_threads=num_threads)


def _read_voice_config(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelNotReadyError(f"{path} is not a readable piper voice config ({exc})") from exc
    return data


def _load_offline_tts(
    model: Path, tokens: Path, inference: dict[str, Any], num_threads: int
) -> Any:
    import sherpa_onnx

    vits = sherpa_onnx.OfflineTtsVitsModelConfig(
        model=str(model), tokens=str(tokens),
        noise_scale=float(inference.get("noise_scale", 0.667)),
        noise_scale_w=float(inference.get("noise_w", 0.8)),
        length_scale=float(inference.get("length_scale", 1.0)),
    )
    config = sherpa_onnx.OfflineTtsConfig(
        model=sherpa_onnx.OfflineTtsModelConfig(vits=vits, num_threads=max(1, num_threads)),
        max_num_sentences=1,
    )
    if not config.validate():
        raise ModelNotReadyError(f"sherpa-onnx rejects the piper voice at {model}")
    try:
        return sherpa_onnx.OfflineTts(config)
    except RuntimeError as exc:
        raise ModelNotReadyError(f"sherpa-onnx could not load {model.name}: {exc}") from exc
