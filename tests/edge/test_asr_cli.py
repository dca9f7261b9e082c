"""``parley asr transcribe``: what a user sees on good and bad input (real models)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from models.corpus import SENTENCES, espeak_utterance, silence
from shared.audio import PROCESSING_RATE, resample, write_wav
from shared.text import normalize_text, word_error_rate


def parley(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shared.cli", *args], capture_output=True,
                          text=True, timeout=600, check=False, env=env)


def transcribe_json(path: Path) -> dict[str, Any]:
    proc = parley("asr", "transcribe", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("parley: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert all(w in lines[0] for w in words), lines[0]


@pytest.mark.usefixtures("built_models")
class TestBadInput:
    def test_a_missing_file(self, tmp_path: Path) -> None:
        assert_one_line_error(parley("asr", "transcribe", str(tmp_path / "nope.wav")),
                              "no such audio file")

    def test_a_file_that_is_not_audio(self, tmp_path: Path) -> None:
        path = tmp_path / "notes.wav"
        path.write_text("this is not a wav file\n")
        assert_one_line_error(parley("asr", "transcribe", str(path)), "not a readable audio")

    def test_an_empty_wav(self, tmp_path: Path) -> None:
        path = tmp_path / "empty.wav"
        write_wav(path, np.zeros(0, np.float32))
        assert_one_line_error(parley("asr", "transcribe", str(path)), "no audio")

    def test_an_unknown_engine(self, tmp_path: Path) -> None:
        path = tmp_path / "quiet.wav"
        write_wav(path, silence(0.5))
        assert_one_line_error(parley("asr", "transcribe", str(path), "--engine", "magic"),
                              "unknown engine")

    def test_silence_and_noise_give_empty_text(self, tmp_path: Path) -> None:
        rng = np.random.default_rng(0)
        for name, audio in {
            "silence": silence(3.0),
            "hiss": (0.03 * rng.standard_normal(4 * PROCESSING_RATE)).astype(np.float32),
            "hum": (0.2 * np.sin(2 * np.pi * 50 * np.arange(3 * PROCESSING_RATE)
                                 / PROCESSING_RATE)).astype(np.float32),
        }.items():
            path = tmp_path / f"{name}.wav"
            write_wav(path, audio)
            result = transcribe_json(path)
            assert result["text"] == "", (name, result)
            assert result["audio_s"] == pytest.approx(len(audio) / PROCESSING_RATE, abs=0.01)


def _stereo_file(path: Path, rate: int) -> str:
    """The first five corpus sentences (eSpeak en-us) with pauses, as a stereo file."""
    parts = [silence(0.4)]
    for sentence in SENTENCES[:5]:
        parts += [espeak_utterance(sentence, voice="en-us", rate_wpm=160).audio, silence(0.8)]
    audio = resample(np.concatenate(parts), PROCESSING_RATE, rate)
    sf.write(str(path), np.stack([audio, 0.5 * audio], axis=1), rate, subtype="PCM_16")
    return " ".join(SENTENCES[:5])


@pytest.mark.usefixtures("built_models")
@pytest.mark.parametrize(("rate", "max_wer"), [(44_100, 0.25), (8000, 0.4)])
def test_stereo_files_at_any_rate_are_transcribed(tmp_path: Path, rate: int,
                                                  max_wer: float) -> None:
    """Channels are mixed and the rate converted (a plumbing check: accuracy is measured in
    test_asr_whisper_wer.py; tiny.en makes a few errors on these five sentences even at full
    band). 8 kHz audio has lost the band above 4 kHz, which costs more accuracy."""
    path = tmp_path / f"speech-{rate}.wav"
    said = _stereo_file(path, rate)
    result = transcribe_json(path)
    assert set(result) == {"engine", "text", "audio_s", "compute_s", "rtf"}
    assert result["engine"] == "sherpa-onnx/whisper-tiny.en-int8"
    assert word_error_rate(said, result["text"]) <= max_wer, result["text"]
    assert result["rtf"] == pytest.approx(result["compute_s"] / result["audio_s"], rel=0.05)


@pytest.mark.slow
@pytest.mark.usefixtures("built_models")
def test_a_ten_minute_recording_in_bounded_memory(tmp_path: Path) -> None:
    """Ten minutes of room noise with a sentence every 40 s: every sentence comes out."""
    rng = np.random.default_rng(1)
    sentences = ["What time do you close tonight?", "Set a timer for fifteen minutes.",
                 "Where can I find the public library?", "Turn the volume down a little, please.",
                 "I lost my wallet somewhere near the park."]
    path = tmp_path / "long.wav"
    rate = 22050
    with sf.SoundFile(str(path), "w", rate, 1, subtype="PCM_16") as f:
        for i in range(15):
            block = (0.002 * rng.standard_normal(40 * rate)).astype(np.float32)
            if i % 3 == 0:
                speech = resample(espeak_utterance(sentences[i // 3]).audio, PROCESSING_RATE, rate)
                block[rate * 10: rate * 10 + speech.size] += speech
            f.write(block)
    measured = ("import resource, sys\nfrom shared.cli import main\ntry:\n"
                f"    main(['asr', 'transcribe', {str(path)!r}, '--json'])\nfinally:\n"
                "    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", measured], capture_output=True, text=True,
                          timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr
    peak_mb = int(proc.stderr.strip().splitlines()[-1]) / 1024
    result = json.loads(proc.stdout)
    print(f"\n10 min file: RTF {result['rtf']}, peak RSS {peak_mb:.0f} MB")
    assert result["audio_s"] == pytest.approx(600.0, abs=0.1)
    # Every sentence comes out, in order (how well Whisper hears eSpeak is measured by
    # test_asr_whisper_wer on 50 utterances; 17 words here are too few for a tight bound).
    assert word_error_rate(" ".join(sentences), result["text"]) <= 0.25, result["text"]
    heard = set(normalize_text(result["text"]).split())
    found = [sum(w in heard for w in normalize_text(s).split()) / len(s.split())
             for s in sentences]
    assert min(found) >= 0.5, found  # most words of each sentence
    assert peak_mb < 1500, f"peak RSS {peak_mb:.0f} MB"
