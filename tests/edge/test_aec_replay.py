"""Speech over the first reply, cancelled again for the recognizer (edge/aec/replay.py).

A user who talks over the agent 0.3 s into its first reply after a cold start meets a
filter that has hardly begun to learn the room: the copy streamed for the recognizer holds
much of the echo under their words. Decoded at the end of their speech, the same stretch
cancelled again with what the canceller has learned by then holds less, and is what the
recognizer hears. Once the canceller has settled nothing is replayed, and a replay never
changes the canceller it copies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from edge.aec import EchoCanceller, EchoSettings
from edge.aec.base import cancel_recording
from edge.aec.erle import erle_db, near_end_loss
from edge.aec.evaluate import decode_scene, spoken, utterance_spans
from edge.aec.linear import NumpyEchoCanceller
from edge.aec.livekit_apm import LivekitEchoCanceller
from edge.aec.replay import EchoReplay
from edge.asr import SpeechRecognizer, load_recognizer
from edge.asr_worker import Decoded
from edge.audio_io import FileDuplex
from edge.config import load_settings
from edge.factory import build_stages
from edge.pipeline import EdgeAgent, Heard
from edge.room import Scene
from edge.turns import Decode
from shared.audio import PROCESSING_RATE
from shared.text import word_errors
from tests.edge.test_aec_memory import later
from tests.fresh import fresh_scene

IMPLEMENTATIONS: dict[str, Callable[[EchoSettings], EchoCanceller]] = {
    "numpy": NumpyEchoCanceller,
    "livekit": LivekitEchoCanceller,
}
FRAME = 160


@cache
def scene(kind: str, seed: int) -> Scene:
    return fresh_scene(kind, seed)


@cache
def early_talker(seed: int) -> Scene:
    """Room ``seed``'s double-talk scene with the user starting 0.3 s into the reply."""
    s = scene("double_talk", seed)
    shift = int(0.3 * PROCESSING_RATE) - s.near_spans[0][0]
    near = later(s.near, shift)
    far_active, near_active = s.far_only | s.double_talk, later(s.double_talk | s.near_only,
                                                                 shift)
    return replace(s, mic=(s.echo + near + s.noise).astype(np.float32), near=near,
                   near_spans=tuple((a + shift, b + shift) for a, b in s.near_spans),
                   double_talk=far_active & near_active, far_only=far_active & ~near_active,
                   near_only=near_active & ~far_active)


@pytest.fixture(scope="module")
def whisper(built_models: None) -> SpeechRecognizer:
    return load_recognizer("whisper")


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_an_early_talkers_words_reach_the_recognizer(impl: str, whisper: SpeechRecognizer) -> None:
    # Rooms 0, 1 and 4, the user's first sentence. Streamed from a cold start, the
    # recognizer's copy (the linear stage's output) holds the echo the filter has not
    # learned yet: whisper made 22-24 word errors over the three. Cancelled again at the end
    # of the sentence with what the filter learned meanwhile: 7. The user's voice is not cut
    # either way.
    errors = {"streamed": 0, "replayed": 0}
    for seed in (0, 1, 4):
        s = early_talker(seed)
        whole, heard = decode_scene(IMPLEMENTATIONS[impl](EchoSettings()), s)
        a, b = utterance_spans(s)[0]
        assert heard[0].size == b - a
        copies = {"streamed": whole.for_asr[a:b], "replayed": heard[0]}
        eaten = near_end_loss(heard[0], s.near[a:b], s.double_talk[a:b]).eaten
        assert eaten <= 0.02, (seed, eaten)
        for k, x in copies.items():
            errors[k] += word_errors(s.near_texts[0], spoken(whisper.transcribe(x).text))[0]
    assert errors["replayed"] <= errors["streamed"] / 2, errors


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_a_replay_leaves_the_canceller_as_it_was(impl: str) -> None:
    s = early_talker(0)
    mine, theirs = (IMPLEMENTATIONS[impl](EchoSettings()) for _ in range(2))
    replay = EchoReplay(mine)
    half = s.mic.size // 2 // FRAME * FRAME
    for i in range(0, half, FRAME):
        mine.cancel(s.mic[i: i + FRAME], s.far[i: i + FRAME])
        replay.push(s.mic[i: i + FRAME], s.far[i: i + FRAME])
    job = replay.job(0, half)
    assert job is not None
    assert job().audio.size == half - mine.latency_samples
    for i in range(0, half, FRAME):
        theirs.cancel(s.mic[i: i + FRAME], s.far[i: i + FRAME])
    rest = slice(half, s.mic.size // FRAME * FRAME)
    assert np.array_equal(cancel_recording(mine, s.mic[rest], s.far[rest]).for_asr,
                          cancel_recording(theirs, s.mic[rest], s.far[rest]).for_asr)


def test_nothing_is_replayed_without_far_end_or_once_the_canceller_settled() -> None:
    far = scene("far_only", 0)
    canceller = NumpyEchoCanceller(EchoSettings())
    replay = EchoReplay(canceller)
    silent = np.zeros(FRAME, dtype=np.float32)
    for i in range(50):  # the user alone: nothing to cancel again
        replay.push(far.noise[i * FRAME: (i + 1) * FRAME], silent)
    assert replay.job(0, 50 * FRAME) is None
    start = 50 * FRAME  # the agent talks: the canceller learns the room
    for reply in range(2):  # two replies of ~8 s
        for i in range(0, far.mic.size // FRAME * FRAME, FRAME):
            canceller.cancel(far.mic[i: i + FRAME], far.far[i: i + FRAME])
            replay.push(far.mic[i: i + FRAME], far.far[i: i + FRAME])
            if reply == 0 and i == FRAME * 150:
                assert not canceller.settled
                assert replay.job(start, start + i) is not None
                assert replay.job(start, start + 21 * PROCESSING_RATE) is None
    assert canceller.settled
    end = 50 * FRAME + 2 * (far.mic.size // FRAME * FRAME)
    assert replay.job(end - FRAME * 100, end) is None
    assert replay.job(start, end) is not None  # speech from before it settled
    canceller.reset()  # a new device, say: learning again
    canceller.cancel(silent, silent)
    replay.push(silent, silent)
    assert not canceller.settled and replay.job(end - FRAME * 100, end) is not None


def test_speech_heard_just_after_the_canceller_settled_is_searched_for_its_onset() -> None:
    # A remembered path that takes over while the user talks settles the canceller in the
    # middle of their words, and the VAD may hear them begin only after. So with an onset
    # search, speech heard within ONSET_S of settling is replayed (its onset looked for
    # before); later speech is not.
    far = scene("far_only", 0)
    canceller = NumpyEchoCanceller(EchoSettings())
    replay = EchoReplay(canceller, find_onset=lambda clean, heard_at: None)
    settled_at = None
    for i in range(0, far.mic.size // FRAME * FRAME, FRAME):
        canceller.cancel(far.mic[i: i + FRAME], far.far[i: i + FRAME])
        replay.push(far.mic[i: i + FRAME], far.far[i: i + FRAME])
        if settled_at is None and canceller.settled:
            settled_at = i + FRAME + canceller.latency_samples
    assert settled_at is not None
    second = PROCESSING_RATE
    assert replay.job(settled_at + second, settled_at + 2 * second) is not None
    assert replay.job(settled_at + 2 * second, settled_at + 3 * second) is None
    # A canceller settled before the first frame (a recording's room learned first) hid
    # nothing: nothing is replayed.
    learned = EchoReplay(canceller, find_onset=lambda clean, heard_at: None)
    for i in range(0, 2 * PROCESSING_RATE, FRAME):
        canceller.cancel(far.mic[i: i + FRAME], far.far[i: i + FRAME])
        learned.push(far.mic[i: i + FRAME], far.far[i: i + FRAME])
    assert learned.job(second, 2 * second) is None


class _Listener:
    """A stand-in recognizer: the pipeline's own decodes, without Whisper's cost."""

    def transcribe(self, samples: np.ndarray) -> object:
        return SimpleNamespace(text="something", words=())


class _Agent(EdgeAgent):
    """Keeps what each final decode heard."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.finals: list[tuple[Decode, Heard]] = []

    def _on_decoded(self, action: Decode, future: asyncio.Future[Decoded[Heard]]) -> None:
        if action.final and not future.cancelled() and future.exception() is None:
            self.finals.append((action, future.result().result))
        super()._on_decoded(action, future)


@pytest.mark.usefixtures("built_models")
def test_the_pipeline_decodes_an_early_talkers_turn_from_the_replay() -> None:
    # The agent's loop over the early talker of room 1 (real AEC and VAD): the first final
    # decode that holds the user's whole first sentence hears it cancelled again, with less
    # echo under the user's words than the copy streamed for it (13 dB under the mic's
    # echo, against 4). A device whose settings turn the replay off hears the stream.
    s = early_talker(1)
    heard = {}
    for replay in (True, False):
        stages = replace(build_stages(load_settings(aec="numpy", aec_replay=replay,
                                                    partial_interval_s=0)), asr=_Listener())
        agent = _Agent(FileDuplex(s.mic, realtime=False, far=s.far), stages, lockstep=True)
        asyncio.run(agent.run())
        action, h = next((a, x) for a, x in agent.finals if a.upto >= s.near_spans[0][1])
        audio, streamed = h.audio, agent.history.slice(h.start, action.upto)
        assert audio.size == streamed.size
        lat = stages.aec.latency_samples
        near, talk = s.near[h.start - lat: action.upto - lat], s.double_talk[
            h.start - lat: action.upto - lat]
        echo = s.echo[h.start - lat: action.upto - lat]
        noise = s.noise[h.start - lat: action.upto - lat]
        # How far under the mic's echo the echo in what was decoded lies, over double talk.
        heard[replay] = erle_db(echo, audio - near - noise, talk)
        if not replay:
            assert np.array_equal(audio, streamed)
    assert heard[True] >= heard[False] + 6.0, heard


@pytest.mark.usefixtures("built_models")
@pytest.mark.parametrize("seed", [0, 2])
def test_the_replay_finds_where_an_early_talker_began(seed: int) -> None:
    # Rooms 0 and 2 (numpy AEC): from a cold start the VAD, on the live clean output, hears
    # the user 0.2-0.6 s after they began (0.3 s into the reply), so their first words are
    # outside the turn. The first final's replay finds the speech already going on at the
    # turn's start and goes back to where it began (less the preroll); the turn, and every
    # later decode of it, starts there. Without the replay it stays late.
    s = early_talker(seed)
    onset, preroll = s.near_spans[0][0], int(0.25 * PROCESSING_RATE)
    for replay in (True, False):
        stages = replace(build_stages(load_settings(aec="numpy", aec_replay=replay,
                                                    partial_interval_s=0)), asr=_Listener())
        agent = _Agent(FileDuplex(s.mic, realtime=False, far=s.far), stages, lockstep=True)
        asyncio.run(agent.run())
        lat = stages.aec.latency_samples
        (first, heard), (second, _) = agent.finals[:2]
        assert first.start - lat > onset - preroll + int(0.05 * PROCESSING_RATE)  # late
        if replay:
            assert onset - preroll - int(0.1 * PROCESSING_RATE) <= heard.start - lat <= onset
            assert second.start == heard.start
        else:
            assert heard.start == first.start
