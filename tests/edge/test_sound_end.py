"""Where the user's speech ended, as a listener would say: the waterfall counts from there."""

from __future__ import annotations

import numpy as np

from edge.pipeline import last_sound
from models.corpus import espeak_utterance
from shared.audio import PROCESSING_RATE


def test_the_last_sound_of_a_word_is_found_within_10_ms() -> None:
    speech = espeak_utterance("What time is it?", voice="en-us", rate_wpm=170).audio
    loud = np.flatnonzero(np.abs(speech) > 0.01)
    end = int(loud[-1]) + 1
    rng = np.random.default_rng(1)
    tail = np.zeros(int(0.3 * PROCESSING_RATE), dtype=np.float32)
    audio = np.concatenate([speech[:end], tail]).astype(np.float32)
    audio += (10 ** (-60 / 20) * rng.standard_normal(audio.size)).astype(np.float32)
    found = last_sound(audio[end - 4000:])
    assert found is not None
    assert abs((end - 4000 + found) - end) <= 160


def test_silence_and_empty_audio_have_no_last_sound() -> None:
    assert last_sound(np.zeros(0, dtype=np.float32)) is None
    assert last_sound(np.zeros(1600, dtype=np.float32)) is None
