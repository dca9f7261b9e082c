"""The Whisper adapter on awkward input, and the pure helpers around it (real model)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.asr import SpeechRecognizer, load_recognizer
from edge.asr.chunking import (
    SpeechChunker,
    align_to_whisper_frames,
    is_silent,
    split_at_quiet_points,
)
from edge.vad import SpeechEnded, SpeechStarted
from models.corpus import espeak_utterance, silence
from shared.audio import PROCESSING_RATE
from shared.text import word_error_rate

RATE = PROCESSING_RATE


@pytest.fixture(scope="module")
def whisper(built_models: None) -> SpeechRecognizer:
    return load_recognizer("whisper")


class TestAwkwardAudio:
    @pytest.mark.parametrize("samples", [0, 1, 100, 800])
    def test_empty_or_very_short_audio_gives_empty_text(
            self, whisper: SpeechRecognizer, samples: int) -> None:
        result = whisper.transcribe(np.zeros(samples, np.float32))
        assert result.text == ""
        assert result.engine == "sherpa-onnx/whisper-tiny.en-int8"

    def test_silence_and_faint_hiss_give_empty_text(self, whisper: SpeechRecognizer) -> None:
        hiss = (0.001 * np.random.default_rng(0).standard_normal(3 * RATE)).astype(np.float32)
        assert whisper.transcribe(silence(5.0)).text == ""
        assert whisper.transcribe(hiss).text == ""

    def test_a_short_command_is_recognized(self, whisper: SpeechRecognizer) -> None:
        text = "Set a timer for fifteen minutes."
        result = whisper.transcribe(espeak_utterance(text, voice="en-us").audio)
        assert word_error_rate(text, result.text) <= 0.2, result.text
        assert result.compute_s > 0

    def test_audio_longer_than_the_whisper_window_is_split(
            self, whisper: SpeechRecognizer) -> None:
        sentences = ["Where can I find the public library?",
                     "Please check if my package has been delivered."]
        parts = []
        for sentence in sentences:
            parts += [espeak_utterance(sentence, voice="en-us").audio, silence(16.0)]
        result = whisper.transcribe(np.concatenate(parts))
        assert word_error_rate(" ".join(sentences), result.text) <= 0.2, result.text


class TestHelpers:
    def test_silence_gate(self) -> None:
        assert is_silent(silence(1.0), -50.0)
        assert is_silent(np.zeros(10, np.float32), -50.0)
        tone = 0.1 * np.sin(np.arange(RATE) / 5.0).astype(np.float32)
        assert not is_silent(tone, -50.0)

    def test_split_lands_on_the_quiet_point(self) -> None:
        loud = 0.3 * np.ones(20 * RATE, np.float32)
        audio = np.concatenate([loud, silence(0.5), loud])
        pieces = split_at_quiet_points(audio, max_s=25.0)
        assert 20.0 <= pieces[0].size / RATE <= 20.5
        assert sum(p.size for p in pieces) == audio.size
        assert all(p.size <= 25 * RATE for p in pieces)

    def test_alignment_gives_whisper_frame_count(self) -> None:
        audio = np.arange(48_900, dtype=np.float32)
        aligned = align_to_whisper_frames(audio)
        assert aligned[:80].tolist() == audio[80:0:-1].tolist()
        assert (aligned.size - 80) // 160 + 1 == audio.size // 160

    def test_chunker_merges_close_speech_and_bounds_memory(self) -> None:
        chunker = SpeechChunker(max_s=24.0, pad_s=0.3, merge_gap_s=1.0)
        block = np.ones(RATE, np.float32)
        chunks = []
        events: dict[int, list[SpeechStarted | SpeechEnded]] = {
            2: [SpeechStarted(sample=2 * RATE, decided_at=2 * RATE)],
            3: [SpeechEnded(sample=3 * RATE, decided_at=3 * RATE)],
            4: [SpeechStarted(sample=int(3.5 * RATE), decided_at=4 * RATE)],
            5: [SpeechEnded(sample=5 * RATE, decided_at=5 * RATE)],
        }
        for second in range(10):
            chunks += chunker.push(block, events.get(second, []))
            assert chunker._buffer.size <= 26 * RATE
        chunks += chunker.finish()
        assert [c.size / RATE for c in chunks] == pytest.approx([3.6])

    def test_chunker_cuts_continuous_speech(self) -> None:
        chunker = SpeechChunker(max_s=5.0, pad_s=0.0, merge_gap_s=1.0)
        chunks = chunker.push(np.zeros(RATE, np.float32), [SpeechStarted(0, 0)])
        for _ in range(11):
            chunks += chunker.push(np.ones(RATE, np.float32), [])
        chunks += chunker.finish()
        assert all(c.size <= 5 * RATE for c in chunks)
        assert sum(c.size for c in chunks) == 12 * RATE


def test_a_stuck_decode_is_retried_with_a_longer_tail_then_the_full_window(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The decoder's loop guard: each retry gives it more silence to find its end."""
    from edge.asr import whisper as w

    recognizer = w.WhisperRecognizer.__new__(w.WhisperRecognizer)
    recognizer.config = w.WhisperConfig(tail_silence_s=1.2, retry_tail_silence_s=2.5)
    windows: list[float] = []
    stuck_runs = {"n": 0}

    def run(audio: np.ndarray) -> tuple[str, int]:
        windows.append(round(audio.size / RATE, 1))
        stuck = len(windows) <= stuck_runs["n"]
        return ("well" if stuck else "hello there"), (10_000 if stuck else 3)  # token cap hit

    monkeypatch.setattr(recognizer, "_run", run)
    speech = (0.1 * np.sin(2 * np.pi * 220 * np.arange(RATE) / RATE)).astype(np.float32)
    full = round(w.MAX_DECODE_S, 1)
    for stuck, expected in ((0, [2.2]), (1, [2.2, 3.5]), (2, [2.2, 3.5, full])):
        windows.clear()
        stuck_runs["n"] = stuck
        assert recognizer._decode(speech) == "hello there"
        assert windows == expected
