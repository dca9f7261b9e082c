"""End-of-turn detection: a pause after "Hello!", "um", "and" or a list item is not the end of
the turn; a finished question is, quickly; the hard maximum pause always ends the turn."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from edge.endpointing.detector import EndOfTurnDetector, EndOfTurnPolicy, EndpointConfig
from edge.endpointing.eval_set import demo_item
from edge.endpointing.features import FEATURE_NAMES, feature_vector, text_cues
from edge.endpointing.simulate import (
    CostModel,
    VadReplay,
    policy_decision,
    timeout_decision,
    trace_item,
)
from edge.endpointing.transcripts import KnownTranscripts
from edge.prosody import ProsodyFeatures, analyze
from tests.fresh import fresh_utterance


@cache
def policy() -> EndOfTurnPolicy:
    return EndOfTurnPolicy()


@cache
def spoken(text: str, voice: str = "en-us") -> ProsodyFeatures:
    """Prosody of ``text`` as eSpeak says it (rendered in a fresh process, see
    :mod:`tests.fresh`), followed by the 130 ms the VAD needs. A rendering depends on what the
    process synthesized before: "What time do you close?" in the RP voice ended the turn at
    once on some renderings and only after 900 ms of pause on others."""
    audio = fresh_utterance(text, voice).audio
    return analyze(np.concatenate([audio, np.zeros(2080, np.float32)]))


@pytest.mark.parametrize(("text", "ending", "last", "greeting", "open_list"), [
    ("Hello!", "sentence", "", True, False),
    ("Hi there,", "comma", "", True, False),
    ("Okay so", "", "conjunction", True, False),
    ("Hey Parley,", "comma", "", True, False),
    ("Um...", "ellipsis", "filler", True, False),
    ("I want the pasta and", "", "conjunction", False, False),
    ("Can you send the report to.", "sentence", "function", False, False),
    ("I need, um", "", "filler", False, False),
    ("I need milk, eggs,", "comma", "", False, True),
    ("Please add milk, eggs and bread to my list.", "sentence", "", False, False),
    ("What time do you close?", "question", "", False, False),
    ("Hello! What time do you close?", "question", "", False, False),
    ("Yes, please.", "sentence", "", False, False),
    ("What's the weather like?", "question", "", False, False),
    ("It's, like", "", "filler", False, False),
])
def test_text_cues_read_how_the_partial_transcript_ends(
        text: str, ending: str, last: str, greeting: bool, open_list: bool) -> None:
    cues = text_cues(text)
    assert (cues.ending, cues.last_class, cues.greeting_only, cues.open_list) == (
        ending, last, greeting, open_list)


@pytest.mark.parametrize(("text", "state"), [
    ("", "empty"), ("Hello.", "greeting"), ("I want the pasta and.", "hanging"),
    ("I want the pasta,", "trailing"), ("We visited Rome. Florence.", "list"),
    ("What time do you close?", "question"), ("Turn it off.", "statement"),
    ("turn it off", "unpunctuated"),
    ("Call my wife. Call my wife. Call my wife. Call my", "statement"),  # whisper looping
])
def test_the_text_state_is_the_strongest_cue(text: str, state: str) -> None:
    assert text_cues(text).state == state


def test_features_are_finite_for_any_input() -> None:
    for text, prosody in [(None, None), ("", ProsodyFeatures()), ("?!,...", None),
                          ("x" * 5000, None), ("and " * 500, ProsodyFeatures(speech_s=1e9))]:
        x = feature_vector(text, prosody)
        assert x.shape == (len(FEATURE_NAMES),) and np.all(np.isfinite(x))
    detector = EndOfTurnDetector()
    for pause in (float("nan"), float("inf"), -1.0, 0.0, 1e12):
        assert 0.0 <= detector.probability(pause, "and", None) <= 1.0


@pytest.mark.parametrize("text", [
    "I want the pasta and", "I want the pasta and...", "Can you send the report to",
    "My daughter is sick so", "Um,", "Uh...", "Well, um", "I need, um", "Hello!", "Hello.",
    "Hi there,", "Okay so", "Good morning!", "Excuse me,", "I need milk, eggs,",
])
def test_a_turn_hanging_on_a_conjunction_filler_greeting_or_list_keeps_waiting(
        text: str) -> None:
    prosody = spoken(text)
    for pause_ms in range(150, 950, 50):  # the set's mid-turn pauses last 0.3-1.0 s
        assert not policy().decide(pause_ms, text, prosody).commit, (text, pause_ms)


@pytest.mark.parametrize(("text", "voice"), [
    ("Can you tell me the weather forecast for tomorrow?", "en-us"),
    ("How far is the nearest train station from here?", "en-us+f2"),
    ("My flight was cancelled and I need a new ticket.", "en-gb-x-rp"),
    ("Hello! What time do you close?", "en-us"),
])
def test_a_complete_request_ends_the_turn_within_300_ms_of_pause(text: str, voice: str) -> None:
    decision = policy().decide(250.0, text, spoken(text, voice))
    assert decision.commit and decision.speculate


def test_a_confident_ending_ends_the_turn_as_soon_as_its_transcript_is_known() -> None:
    text = "Can you tell me the weather forecast for tomorrow?"
    prosody = spoken(text)
    p = policy()
    decision = p.decide(100.0, text, prosody)  # the pause term has not grown yet
    assert decision.commit
    # without the words-and-voice rule the same ending would have to wait for the pause
    pause_only = EndOfTurnPolicy(config=EndpointConfig(text_threshold=1.0))
    assert pause_only.decide(100.0, text, prosody).commit == (
        decision.probability >= p.end_threshold)
    assert EndOfTurnDetector().probability(0.0, text, prosody) >= p.text_threshold


@pytest.mark.parametrize("voice", ["en-us", "en-us+f2", "en-gb-x-rp"])
def test_a_short_complete_question_ends_the_turn_well_before_the_hard_maximum(
        voice: str) -> None:
    text = "What time do you close?"
    prosody = spoken(text, voice)
    first = next(ms for ms in range(0, 2000, 50) if policy().decide(ms, text, prosody).commit)
    assert first <= 700 < policy().max_pause_ms
    assert policy().decide(200, text, prosody).speculate  # the cloud may start at once


@pytest.mark.parametrize("text", ["I want the pasta and", "Hello!", "Um", "", None])
def test_the_hard_maximum_pause_always_ends_the_turn(text: str | None) -> None:
    p = policy()
    assert p.decide(p.max_pause_ms, text, None).commit
    assert p.decide(p.max_pause_ms + 5000, text, ProsodyFeatures()).commit


def test_the_policy_over_a_simulated_pause() -> None:
    p = policy()
    pauses = range(0, int(p.max_pause_ms) + 100, 50)
    text = "Can you tell me the weather forecast for tomorrow?"
    question = [p.decide(ms, text, spoken(text)) for ms in pauses]
    greeting = [p.decide(ms, "Hello!", spoken("Hello!")) for ms in pauses]
    probabilities = [d.probability for d in question]
    assert probabilities == sorted(probabilities)  # longer silence, more likely the end
    first_speculation = next(i for i, d in enumerate(question) if d.speculate)
    first_commit = next(i for i, d in enumerate(question) if d.commit)
    assert first_speculation <= first_commit and pauses[first_commit] <= 300
    assert all(d.commit for d in question[first_commit:])
    greeting_commit = next(i for i, d in enumerate(greeting) if d.commit)
    assert pauses[greeting_commit] >= 1100
    assert all(0.0 <= d.probability <= 1.0 for d in question + greeting)


def test_the_speculative_threshold_is_not_above_the_end_threshold() -> None:
    p = EndOfTurnPolicy(config=EndpointConfig(end_threshold=0.6, speculative_threshold=0.9))
    assert p.speculative_threshold == 0.6
    assert 0.0 < p.text_threshold <= 1.0
    assert p.decide(100.0, "What time do you close?", None).probability == pytest.approx(
        EndOfTurnDetector().probability(100.0, "What time do you close?", None))


@pytest.fixture(scope="module")
def replay() -> VadReplay:
    from edge.endpointing.bench import ENDPOINT_VAD
    from edge.vad import SileroVad

    return VadReplay(SileroVad(ENDPOINT_VAD))


@pytest.mark.parametrize(("greeting", "pause_s"), [
    ("Hello!", 0.3), ("Hello!", 0.6), ("Hello!", 1.0), ("Hi!", 0.8), ("Hello.", 0.7),
    ("Hi there,", 0.9), ("Good morning!", 1.0),
])
def test_the_demo_question_after_a_greeting_is_one_turn(
        replay: VadReplay, greeting: str, pause_s: float) -> None:
    item = demo_item(greeting=greeting, pause_s=pause_s)
    trace = trace_item(item, replay.events(item), KnownTranscripts(), CostModel(0.12, 0.0),
                       CostModel(0.0, 0.005))
    at = policy_decision(trace, lambda ms, text, pr: policy().decide(ms, text, pr).commit)
    assert at is not None and at >= item.speech_end  # not cut after the greeting
    assert (at - item.speech_end) / 16 < 600  # and answered promptly after the question
    assert timeout_decision(trace, 0.2) < item.spans[1].start  # a 0.2 s timeout splits it


@pytest.mark.slow
@pytest.mark.parametrize(("greeting", "pause_s", "voice"), [
    ("Hello!", 0.6, "en-us"), ("Hello!", 1.0, "en-gb-x-rp"), ("Hi there,", 0.8, "en-us+f2"),
])
def test_the_demo_question_is_one_turn_with_the_real_recognizer(
        built_models: None, replay: VadReplay, greeting: str, pause_s: float,
        voice: str) -> None:
    from edge.asr import load_recognizer
    from edge.endpointing.transcripts import RecognizerTranscripts

    recognizer = load_recognizer("whisper")
    source = RecognizerTranscripts(lambda audio: recognizer.transcribe(audio).text)
    item = demo_item(greeting=greeting, pause_s=pause_s, voice=voice)
    trace = trace_item(item, replay.events(item), source, CostModel(0.3, 0.1),
                       CostModel(0.0, 0.005))
    at = policy_decision(trace, lambda ms, text, pr: policy().decide(ms, text, pr).commit)
    first = next(p for p in trace.pauses if not p.final and p.ready_at is not None)
    assert at is not None and at >= item.speech_end, first.text  # one turn, not two
