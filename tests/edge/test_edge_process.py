"""``parley edge process``: the whole front end over files, on the inputs a user really has.

Device rates and channel counts other than 16 kHz mono, clipped audio, a silent file, a
missing or empty file, and ten minutes of noise: each gives either the transcript a
user expects or one clear error line, never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from models.corpus import espeak_utterance, silence
from shared.audio import PROCESSING_RATE, resample
from shared.text import word_error_rate
from tests.edge.test_asr_cli import assert_one_line_error, parley
from tests.fresh import fresh_scene

pytestmark = pytest.mark.usefixtures("built_models")

QUESTION = "What time does the museum open tomorrow?"


def process(path: Path, *extra: str) -> dict[str, Any]:
    proc = parley("edge", "process", "--mic", str(path), "--json", *extra)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def spoken() -> np.ndarray:
    speech = espeak_utterance(QUESTION, voice="en-us+f3", rate_wpm=160).audio
    return np.concatenate([silence(0.5), speech, silence(1.5)]).astype(np.float32)


def test_a_44_khz_stereo_recording_is_transcribed(tmp_path: Path) -> None:
    audio = resample(spoken(), PROCESSING_RATE, 44100)
    stereo = np.stack([audio, 0.5 * audio], axis=1)
    path = tmp_path / "stereo44.wav"
    sf.write(path, stereo, 44100, subtype="PCM_16")
    result = process(path)
    assert len(result["segments"]) == 1
    assert word_error_rate(QUESTION, result["segments"][0]["text"]) <= 0.25
    assert 0.1 < result["segments"][0]["start_s"] < 0.8  # speech at 0.5 s, less preroll


@pytest.mark.parametrize("rate, gain", [(8000, 1.0), (16000, 4.0)], ids=["8khz", "clipped"])
def test_telephone_band_or_clipped_audio_still_gives_the_question(tmp_path: Path, rate: int,
                                                                   gain: float) -> None:
    audio = np.clip(gain * resample(spoken(), PROCESSING_RATE, rate), -0.5, 0.5)
    path = tmp_path / "degraded.wav"
    sf.write(path, audio, rate, subtype="PCM_16")
    result = process(path)
    assert len(result["segments"]) == 1
    assert word_error_rate(QUESTION, result["segments"][0]["text"]) <= 0.3


def test_silence_gives_no_segments(tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(5 * PROCESSING_RATE, dtype=np.float32), PROCESSING_RATE)
    result = process(path)
    assert result["segments"] == []
    assert result["audio_s"] == 5.0


def test_a_missing_mic_file_is_one_line(tmp_path: Path) -> None:
    proc = parley("edge", "process", "--mic", str(tmp_path / "nope.wav"))
    assert_one_line_error(proc, "nope.wav")


def test_an_empty_far_file_is_one_line(tmp_path: Path) -> None:
    mic, far = tmp_path / "mic.wav", tmp_path / "far.wav"
    sf.write(mic, spoken(), PROCESSING_RATE)
    sf.write(far, np.zeros(0, dtype=np.float32), PROCESSING_RATE)
    proc = parley("edge", "process", "--mic", str(mic), "--far", str(far))
    assert_one_line_error(proc, "far.wav", "no audio")


def test_a_text_file_posing_as_audio_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 100)
    proc = parley("edge", "process", "--mic", str(path))
    assert_one_line_error(proc, "notes.wav")


def test_ten_minutes_of_noise_completes_without_inventing_turns(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    noise = (0.02 * rng.standard_normal(600 * PROCESSING_RATE)).astype(np.float32)
    path = tmp_path / "noise.wav"
    sf.write(path, noise, PROCESSING_RATE, subtype="PCM_16")
    result = process(path)
    assert result["audio_s"] == 600.0
    assert len(result["segments"]) <= 2  # steady noise is not speech
    assert result["rtf"] < 1.0  # offline over files: faster than real time even here


@pytest.mark.parametrize("seed", [0, 4])
def test_the_agents_echo_is_not_transcribed_and_the_user_over_it_is(tmp_path: Path,
                                                                    seed: int) -> None:
    # Room-echo scenes (edge/room.py): the agent's reply through a room, then the user
    # talking over the next one from a cold start (seed 4: 1.5 s in, loudspeaker clipping).
    from edge.room import Scene

    def files(kind: str) -> tuple[Scene, Path, Path]:
        s = fresh_scene(kind, seed)  # the same audio in any test order
        mic, far = tmp_path / f"{kind}-mic.wav", tmp_path / f"{kind}-far.wav"
        sf.write(mic, s.mic, PROCESSING_RATE, subtype="FLOAT")
        sf.write(far, s.far, PROCESSING_RATE, subtype="FLOAT")
        return s, mic, far

    _, mic, far = files("far_only")
    assert process(mic)["segments"], "without --far the echo is the agent's words"
    assert process(mic, "--far", str(far))["segments"] == []
    assert process(mic, "--far", str(far), "--causal")["segments"] == []  # as live, cold
    talk, mic, far = files("double_talk")
    segments = process(mic, "--far", str(far))["segments"]
    heard = " ".join(seg["text"] for seg in segments)
    assert word_error_rate(" ".join(talk.near_texts), heard) <= 0.5, heard
    spans = [(a / PROCESSING_RATE, b / PROCESSING_RATE) for a, b in talk.near_spans]
    for seg in segments:  # nothing outside the user's speech
        assert any(seg["start_s"] < b + 0.5 and seg["end_s"] > a - 0.5 for a, b in spans), seg


def test_the_echo_path_learned_in_one_run_is_used_by_the_next(tmp_path: Path) -> None:
    # A kiosk's first reply after a restart: the user talks over it 1.5 s in (room 0).
    memory = tmp_path / "echo-path.npz"
    runs = []
    for kind in ("far_only", "double_talk"):
        s = fresh_scene(kind, 0)
        mic, far = tmp_path / f"{kind}-mic.wav", tmp_path / f"{kind}-far.wav"
        sf.write(mic, s.mic, PROCESSING_RATE, subtype="FLOAT")
        sf.write(far, s.far, PROCESSING_RATE, subtype="FLOAT")
        runs.append(process(mic, "--far", str(far), "--echo-memory", str(memory)))
        assert memory.exists()
    echo_only, talk = runs
    assert echo_only["segments"] == []
    assert echo_only["echo_memory"] | {"file": ""} == {
        "file": "", "recalled": False, "kept": True, "remembered_path": "none"}
    # The second run started from the first one's path, which proved itself on the room's
    # echo before the user spoke, and took over.
    assert talk["echo_memory"]["recalled"] and talk["echo_memory"]["kept"]
    assert talk["echo_memory"]["remembered_path"] == "taken over"
    heard = " ".join(seg["text"] for seg in talk["segments"])
    assert word_error_rate(" ".join(s.near_texts), heard) <= 0.5, heard


def _sounding(text: str) -> np.ndarray:
    audio = espeak_utterance(text, voice="en-us", rate_wpm=150).audio
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return audio[loud[0]: loud[-1] + 1]


@pytest.mark.parametrize("pause_s, turns", [(0.3, 1), (1.0, 2)])
def test_a_user_resuming_before_a_reply_could_play_continues_their_turn(
        tmp_path: Path, pause_s: float, turns: int) -> None:
    # The end-of-turn timeout here ends a turn 100 ms into any pause. Live, a user who goes
    # on before hearing the reply continues their turn; offline, one who goes on within the
    # ~0.5 s a live reply takes to start playing: one segment with all their words. After a
    # 1 s pause, a new turn.
    from edge.config import load_settings
    from edge.offline import process_files
    from shared.audio import write_wav

    first, second = "Please call me a taxi", "to the airport at nine o clock."
    audio = np.concatenate([silence(0.5), _sounding(first), silence(pause_s),
                            _sounding(second), silence(1.5)]).astype(np.float32)
    path = tmp_path / "resumed.wav"
    write_wav(path, audio)
    settings = load_settings(endpointing="timeout", timeout_ms=100)
    segments = process_files(path, None, None, settings)["segments"]
    assert len(segments) == turns, segments
    second_starts = 0.5 + _sounding(first).size / PROCESSING_RATE + pause_s
    assert segments[-1]["end_s"] > second_starts  # the last segment holds the second part
    assert segments[0]["start_s"] < 0.5  # and the first one the first part
    heard = " ".join(s["text"] for s in segments)
    assert word_error_rate(f"{first} {second}", heard) <= 0.5, heard  # tiny.en, eSpeak
