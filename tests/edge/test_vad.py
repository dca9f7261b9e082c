"""The VAD's end of speech: soon after the last sound, and where the last sound was."""

from __future__ import annotations

import numpy as np
import pytest

from edge.vad import SileroVad, SpeechEnded, SpeechPausing, SpeechStarted, VadConfig, VadEvent
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
