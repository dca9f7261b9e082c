"""The piper voice through sherpa-onnx: what a listener would notice about its speech."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from cloud.engines.tts import PiperSynthesizer, SpeechSynthesizer, SpeechTextError, default_piper
from models import registry
from shared.audio import Samples, rms_db


@pytest.fixture(scope="module")
def voice() -> PiperSynthesizer:
    """The built default voice (built here if missing: it takes about a second)."""
    spec = registry.default_spec("tts")
    if not registry.status(spec).ready:
        from models.build import build_all

        build_all([spec.name], progress=lambda _: None)
    return default_piper()


def seconds(voice: SpeechSynthesizer, audio: Samples) -> float:
    return audio.size / voice.sample_rate


def longest_inner_pause_ms(audio: Samples, rate: int, threshold_db: float = -40.0) -> int:
    """The longest run of quiet 10 ms frames between the first and last loud one."""
    frame = rate // 100
    n = audio.size // frame
    levels = [rms_db(audio[i * frame:(i + 1) * frame]) for i in range(n)]
    loud = [i for i, db in enumerate(levels) if db > threshold_db]
    best = run = 0
    for db in levels[loud[0]:loud[-1] + 1]:
        run = run + 1 if db <= threshold_db else 0
        best = max(best, run)
    return best * 10


def test_a_sentence_is_audible_speech_of_plausible_length(voice: PiperSynthesizer) -> None:
    audio = voice.synthesize("The museum opens at nine tomorrow morning.")
    assert voice.sample_rate == 22050
    assert audio.dtype == np.float32
    assert 1.2 < seconds(voice, audio) < 4.5  # 7 words
    assert rms_db(audio) > -30
    assert np.abs(audio).max() <= 1.0


def test_speech_starts_at_once_and_ends_without_a_long_tail(voice: PiperSynthesizer) -> None:
    for text in ("Sure,", "The capital city of Australia is Canberra."):
        audio = voice.synthesize(text)
        loud = np.flatnonzero(np.abs(audio) > 0.01)
        assert loud[0] / voice.sample_rate <= 0.02  # a silent lead is heard as latency
        assert (audio.size - loud[-1]) / voice.sample_rate <= 0.35  # tail + sentence pause


def test_a_sentence_end_makes_a_pause_that_run_on_words_do_not(voice: PiperSynthesizer) -> None:
    with_stop = voice.synthesize("I see. Let me check.")
    run_on = voice.synthesize("I see let me check")
    assert longest_inner_pause_ms(with_stop, voice.sample_rate) >= 150
    assert (longest_inner_pause_ms(with_stop, voice.sample_rate)
            > longest_inner_pause_ms(run_on, voice.sample_rate) + 50)


def test_commas_make_audible_pauses(voice: PiperSynthesizer) -> None:
    with_commas = voice.synthesize("Yes, of course, I can do that.")
    without = voice.synthesize("Yes of course I can do that.")
    assert seconds(voice, with_commas) > seconds(voice, without) + 0.2
    assert (longest_inner_pause_ms(with_commas, voice.sample_rate)
            > longest_inner_pause_ms(without, voice.sample_rate) + 80)


def test_stream_gives_one_chunk_per_sentence(voice: PiperSynthesizer) -> None:
    chunks = list(voice.stream("Sure. The museum opens at nine. Do you need tickets?"))
    assert len(chunks) == 3
    assert all(rms_db(c) > -35 for c in chunks)


def test_speed_changes_the_length_of_the_speech(voice: PiperSynthesizer) -> None:
    # Not proportional: each phoneme lasts a whole number of frames whatever the speed.
    text = "Please turn off the lights in the kitchen, and lock the back door."
    normal = seconds(voice, voice.synthesize(text))
    assert seconds(voice, voice.synthesize(text, speed=1.6)) < 0.85 * normal
    assert seconds(voice, voice.synthesize(text, speed=0.6)) > 1.15 * normal


def test_cancelling_stops_before_the_next_sentence(voice: PiperSynthesizer) -> None:
    text = "One sentence here. Another one follows. And a third. And a fourth one."
    made: list[Samples] = []

    def keep_going() -> bool:
        return len(made) < 1

    for chunk in voice.stream(text, should_continue=keep_going):
        made.append(chunk)
    assert len(made) == 1
    assert voice.synthesize(text, should_continue=lambda: False).size == 0


def test_a_barge_in_from_another_thread_stops_the_worker(voice: PiperSynthesizer) -> None:
    barge_in = threading.Event()
    first_audio = threading.Event()
    chunks: list[Samples] = []
    text = " ".join(["This sentence is one of many in a long reply."] * 12)

    def worker() -> None:  # the cloud synthesizes on a worker thread
        for chunk in voice.stream(text, should_continue=lambda: not barge_in.is_set()):
            chunks.append(chunk)
            first_audio.set()

    thread = threading.Thread(target=worker)
    thread.start()
    assert first_audio.wait(30)
    barge_in.set()
    thread.join(30)
    assert 1 <= len(chunks) <= 2  # the sentence being made when the user spoke may finish


def test_a_long_sentence_without_punctuation_is_made_in_bounded_chunks(
    voice: PiperSynthesizer,
) -> None:
    words = " ".join(["lovely weather"] * 60)  # ~800 phonemes, no punctuation
    chunks: list[Samples] = []
    for chunk in voice.stream(words, should_continue=lambda: len(chunks) < 2):
        chunks.append(chunk)
    assert len(chunks) == 2
    assert all(1.0 < seconds(voice, c) < 15.0 for c in chunks)


@pytest.mark.parametrize("text", ["", "   ", "\n\t\r", "😀🎉", "...", "\x00\x1b[31m"])
def test_nothing_to_say_gives_empty_audio(voice: PiperSynthesizer, text: str) -> None:
    assert voice.synthesize(text).size == 0


@pytest.mark.parametrize("text", [
    "Call 555-1234 or visit https://example.com/help?q=1&x=2 before 10:30 pm.",
    "It's 3.14159, about 22/7, and 1,000,000 is a million; 42% of $19.99 is $8.40.",
    "\x00nul\x07 bell \x1b escape\ufeff bom \u202e rtl text\u200d",
    "Ünïcödé façade, naïve café, 你好, Привет, مرحبا.",
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA!!!!!!!!!",
    "a" * 300,
])
def test_odd_text_still_gives_speech(voice: PiperSynthesizer, text: str) -> None:
    audio = voice.synthesize(text)
    assert audio.size > 0 and np.isfinite(audio).all()
    assert rms_db(audio) > -40


def test_ten_kilobytes_of_text_is_refused_with_one_line(voice: PiperSynthesizer) -> None:
    with pytest.raises(SpeechTextError) as err:
        voice.synthesize("All work and no play. " * 470)
    assert "\n" not in str(err.value)
    with pytest.raises(SpeechTextError):
        voice.stream("All work and no play. " * 470)  # at the call, before any audio


def test_two_threads_can_speak_at_once(voice: PiperSynthesizer) -> None:
    results: dict[int, float] = {}

    def speak(i: int) -> None:
        results[i] = seconds(voice, voice.synthesize(f"Thread number {i} is speaking now."))

    threads = [threading.Thread(target=speak, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [0, 1] and all(s > 1.0 for s in results.values())


def test_warm_up_runs(voice: PiperSynthesizer) -> None:
    voice.warm_up()
