"""The VAD's end of speech: soon after the last sound, and where the last sound was."""

from __future__ import annotations

import numpy as np
import pytest

from edge.vad import (
    SileroVad,
    SpeechEnded,
    SpeechPausing,
    SpeechStarted,
    VadConfig,
    VadEvent,
    speech_onset,
)
from models.corpus import espeak_utterance, silence
from shared.audio import PROCESSING_RATE

pytestmark = pytest.mark.usefixtures("built_models")


def events(audio: np.ndarray, config: VadConfig) -> list[VadEvent]:
    vad = SileroVad(config)
    out: list[VadEvent] = []
    for i in range(0, audio.size - 160 + 1, 160):  # 10 ms frames, as the edge feeds it
        out.extend(vad.push(audio[i:i + 160]))
    return out


def scene(seed: int) -> tuple[np.ndarray, int]:
    speech = espeak_utterance("Could you book a table for two tonight?", voice="en-us",
                              rate_wpm=165).audio
    audio = np.concatenate([silence(0.5), speech, silence(1.0)]).astype(np.float32)
    last = 8000 + int(np.flatnonzero(np.abs(speech) > 0.01)[-1])
    noise = np.random.default_rng(seed).standard_normal(audio.size) * 10 ** (-55 / 20)
    return (audio + noise).astype(np.float32), last


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_level_ends_speech_sooner_than_the_model_alone(seed: int) -> None:
    audio, last = scene(seed)
    with_level = [e for e in events(audio, VadConfig(min_silence_s=0.03, quiet_db=30.0))
                  if isinstance(e, SpeechEnded)]
    model_only = [e for e in events(audio, VadConfig(min_silence_s=0.03, quiet_db=None))
                  if isinstance(e, SpeechEnded)]
    assert len(with_level) == len(model_only) == 1  # one stretch of speech either way
    early, late = with_level[0], model_only[0]
    assert early.decided_at < late.decided_at
    assert 0 <= early.decided_at - last <= 0.12 * PROCESSING_RATE
    assert abs(early.sample - last) <= 0.05 * PROCESSING_RATE  # where the sound stopped


def test_the_model_still_decides_when_the_level_never_falls() -> None:
    audio, _ = scene(0)
    hum = (0.05 * np.sin(2 * np.pi * 120 * np.arange(audio.size) / PROCESSING_RATE))
    kinds = [type(e) for e in events((audio + hum).astype(np.float32),
                                     VadConfig(min_silence_s=0.03, quiet_db=30.0))]
    assert kinds.count(SpeechStarted) == kinds.count(SpeechEnded) <= 2


@pytest.mark.parametrize("seed", [0, 1])
def test_a_level_end_is_announced_one_window_before_it_is_confirmed(seed: int) -> None:
    audio, _ = scene(seed)
    out = events(audio, VadConfig(min_silence_s=0.03, quiet_db=30.0))
    (end,) = [e for e in out if isinstance(e, SpeechEnded)]
    announced = [e for e in out if isinstance(e, SpeechPausing) and e.sample == end.sample]
    assert len(announced) == 1
    assert end.decided_at - announced[0].decided_at == 512  # one window sooner


def test_speech_onset_finds_where_the_speech_going_on_began() -> None:
    # Two sentences with a 0.6 s pause, the first broken by a 0.05 s one: asked about a
    # moment inside the speech, the VAD finds where that stretch began (the short pause is
    # bridged, the long one is not); asked about a moment of silence, it finds none.
    a = espeak_utterance("Could you book a table", voice="en-us", rate_wpm=165).audio
    b = espeak_utterance("for two tonight?", voice="en-us", rate_wpm=165).audio
    c = espeak_utterance("And a taxi at nine.", voice="en-us", rate_wpm=165).audio
    parts = [silence(1.0), a, silence(0.05), b, silence(0.6), c, silence(0.5)]
    audio = np.concatenate(parts).astype(np.float32)
    audio += np.random.default_rng(0).standard_normal(audio.size).astype(np.float32) * 1e-3
    starts = np.cumsum([0] + [x.size for x in parts])
    first_sound = starts[1] + int(np.flatnonzero(np.abs(a) > 0.01)[0])
    last_sound = starts[4] - b.size + int(np.flatnonzero(np.abs(b) > 0.01)[-1])
    third = starts[5] + int(np.flatnonzero(np.abs(c) > 0.01)[0])
    vad = SileroVad(VadConfig(min_silence_s=0.03, quiet_db=30.0))
    tolerance = int(0.1 * PROCESSING_RATE)
    for at in (starts[3] + 800, starts[4] - 800):  # inside "for two tonight?"
        onset = speech_onset(vad, audio, at)
        assert onset is not None and abs(onset - first_sound) <= tolerance, (at, onset)
    onset = speech_onset(vad, audio, starts[6] - 800)  # inside the third sentence
    assert onset is not None and abs(onset - third) <= tolerance and onset > last_sound
    assert speech_onset(vad, audio, int(0.5 * PROCESSING_RATE)) is None  # before any speech
    assert speech_onset(vad, audio, (last_sound + third) // 2) is None  # in the long pause
