"""Spoken input files for the demo and the end-to-end benchmark, built by the project.

A scene is a mic recording with several user turns at known places: the true start and end
of each turn's speech are kept beside the audio (a JSON sidecar), so latency can be measured
from the files alone. Voices are eSpeak NG voices — deliberately not the assistant's piper
voice, so the user and the reply are told apart in the speaker and mic tracks.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from models.corpus import espeak_utterance, silence
from shared.audio import PROCESSING_RATE, Samples, frame_levels_db, read_wav, write_wav

SAMPLE_WAV = Path(__file__).with_name("data") / "sample_question.wav"


@dataclass(frozen=True, slots=True)
class SpokenTurn:
    """One user turn: its words and where its speech starts and ends (seconds)."""

    text: str
    start_s: float
    end_s: float
    barge_in: bool = False  # spoken over the previous reply on purpose


@dataclass(frozen=True, slots=True)
class Scene:
    name: str
    audio: Samples
    turns: tuple[SpokenTurn, ...]

    def write(self, path: Path) -> None:
        write_wav(path, self.audio)
        meta = {"name": self.name, "turns": [asdict(t) for t in self.turns]}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def load_turns(wav: Path) -> tuple[SpokenTurn, ...] | None:
    """The known turns of an input file, when a sidecar JSON is beside it."""
    meta = wav.with_suffix(".json")
    if not meta.is_file():
        return None
    data = json.loads(meta.read_text(encoding="utf-8"))
    return tuple(SpokenTurn(**t) for t in data["turns"])


def _compose(name: str, parts: list[tuple[str, str, float, bool]], voice: str,
             rate: int, lead_s: float = 0.5, tail_s: float = 0.5) -> Scene:
    """``parts``: (kind, text, seconds, barge_in) — kind "say" speaks text (joined into the
    current turn), "pause" adds silence inside a turn, "gap" ends the turn and waits."""
    audio: list[Samples] = [silence(lead_s)]
    turns: list[SpokenTurn] = []
    cursor, turn_start, words, barge = lead_s, None, [], False
    speech_end = cursor
    for kind, text, seconds, is_barge in parts:
        if kind == "say":
            u = espeak_utterance(text, voice=voice, rate_wpm=rate)
            barge = barge or is_barge
            audio.append(u.audio)
            onset, offset = _speech_extent(u.audio)
            turn_start = cursor + onset if turn_start is None else turn_start
            speech_end = cursor + offset
            cursor += u.seconds
            words.append(text)
        elif kind == "pause":
            audio.append(silence(seconds))
            cursor += seconds
        elif kind == "gap":
            if turn_start is not None:
                turns.append(SpokenTurn(" ".join(words), round(turn_start, 3),
                                        round(speech_end, 3), barge))
            turn_start, words, barge = None, [], False
            audio.append(silence(seconds))
            cursor += seconds
    if turn_start is not None:
        turns.append(SpokenTurn(" ".join(words), round(turn_start, 3), round(speech_end, 3),
                                barge))
    audio.append(silence(tail_s))
    return Scene(name, np.concatenate(audio).astype(np.float32), tuple(turns))


def _speech_extent(audio: Samples, threshold_db: float = -40.0) -> tuple[float, float]:
    """First and last instant (seconds) where the 10 ms level exceeds ``threshold_db``."""
    loud = np.flatnonzero(frame_levels_db(audio) > threshold_db)
    if loud.size == 0:
        return 0.0, audio.size / PROCESSING_RATE
    return float(loud[0]) * 0.01, float(loud[-1] + 1) * 0.01


def sample_question() -> Scene:
    """The bundled demo input: a greeting, a pause, then the question — one turn."""
    return _compose("sample_question", [
        ("say", "Hello!", 0, False), ("pause", "", 0.6, False),
        ("say", "What time do you close today?", 0, False),
    ], voice="en-us+m3", rate=165, tail_s=0.3)


def bench_scenes() -> list[Scene]:
    """The end-to-end benchmark's inputs: several files, several turns, two barge-ins."""
    return [
        _compose("questions", [
            ("say", "What is the capital city of Australia?", 0, False), ("gap", "", 6.0, False),
            ("say", "How far is the nearest train station?", 0, False), ("gap", "", 6.0, False),
            ("say", "Can you recommend a good restaurant?", 0, False),
        ], voice="en-us+f2", rate=170),
        _compose("requests", [
            ("say", "Hello!", 0, False), ("pause", "", 0.5, False),
            ("say", "I would like to book a table for two.", 0, False), ("gap", "", 6.0, False),
            ("say", "Do you have any vegetarian dishes?", 0, False), ("gap", "", 6.0, False),
            ("say", "Please set a timer for ten minutes.", 0, False),
        ], voice="en-gb-x-rp", rate=160),
        _compose("barge_in", [
            ("say", "Tell me a long story about a brave little dog.", 0, False),
            ("gap", "", 2.2, False),
            ("say", "Stop. What time is it in Tokyo?", 0, True), ("gap", "", 6.0, False),
            ("say", "Thank you very much.", 0, False),
        ], voice="en-us", rate=175),
        # talking over the first reply from a cold start, a few hundred ms into it
        _compose("barge_in_early", [
            ("say", "Can you describe the city of Paris?", 0, False), ("gap", "", 1.0, False),
            ("say", "Wait, tell me about Rome instead.", 0, True), ("gap", "", 6.0, False),
        ], voice="en-gb-x-rp", rate=170),
    ]


def sample_path() -> Path:
    """The bundled sample, written on first use (deterministic: eSpeak NG, fixed voice)."""
    if not SAMPLE_WAV.is_file():
        sample_question().write(SAMPLE_WAV)
    return SAMPLE_WAV


def read_scene(path: Path) -> tuple[Samples, tuple[SpokenTurn, ...] | None]:
    return read_wav(path, PROCESSING_RATE), load_turns(path)
