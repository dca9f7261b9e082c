"""The edge agent end to end over files: real AEC, VAD, Whisper and prosody; a fake cloud.

What a user would notice: each question becomes one transcript with prosody; the agent's own
voice coming back through the room is never taken for the user; when the user talks over the
reply the speaker falls silent at once and the cloud is told exactly what was heard.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from edge.audio_io import FileDuplex
from edge.config import load_settings
from edge.factory import build_stages
from edge.pipeline import EdgeAgent
from edge.room import EchoPath, RoomSpec
from models.corpus import espeak_utterance, piper_utterance, silence
from shared import protocol as p
from shared.audio import PROCESSING_RATE, Samples
from shared.text import corpus_word_error_rate
from tests.edge.fake_cloud import FakeCloud

pytestmark = pytest.mark.usefixtures("built_models")


@dataclass
class Said:
    text: str
    start: int
    end: int


def compose(*parts: tuple[str, float]) -> tuple[Samples, list[Said]]:
    """("say", text) or ("wait", seconds) -> mic audio and where each phrase is."""
    audio, said, at = [], [], 0
    for kind, value in parts:
        if kind == "wait":
            chunk = silence(float(value))
        else:
            chunk = espeak_utterance(str(value), voice="en-us+m3", rate_wpm=165).audio
            loud = np.flatnonzero(np.abs(chunk) > 0.01)
            said.append(Said(str(value), at + int(loud[0]), at + int(loud[-1])))
        audio.append(chunk)
        at += chunk.size
    return np.concatenate(audio).astype(np.float32), said


async def run_agent(mic: Samples, cloud: FakeCloud | None, echo: bool,
                    **overrides: object) -> tuple[EdgeAgent, FileDuplex]:
    settings = load_settings(partial_interval_s=0, **overrides)
    stages = build_stages(settings, echo_cancelling=echo)
    room = EchoPath(RoomSpec(delay_ms=60, rt60_s=0.35, echo_gain_db=-6, seed=3)) if echo else None
    device = FileDuplex(mic, realtime=False, echo=room)
    agent = EdgeAgent(device, stages, link=cloud, lockstep=True)
    await agent.run()
    return agent, device


async def test_each_question_is_one_transcript_with_prosody() -> None:
    mic, said = compose(("wait", 0.5), ("say", "What time does the museum open tomorrow?"),
                        ("wait", 2.0), ("say", "I would like two tickets, please."),
                        ("wait", 1.5))
    cloud = FakeCloud(silence(0.1))
    # A fixed pause ends each turn here: the end-of-turn detector cuts ~4% of held-out turns
    # short (measured by `parley bench endpointing`), which this test is not about.
    await run_agent(mic, cloud, echo=False, endpointing="timeout", timeout_ms=800)
    # A pause inside a sentence may send a speculative final that the edge cancels when the
    # user goes on; the cloud answers only the finals left standing.
    cancelled = {m.turn_id for m in cloud.of_type(p.Cancel)}  # type: ignore[attr-defined]
    finals = [f for f in cloud.of_type(p.TranscriptFinal)
              if f.turn_id not in cancelled]  # type: ignore[attr-defined]
    assert len(finals) == 2, cloud.sent
    pairs = [(truth.text, f.text) for truth, f in zip(said, finals, strict=True)
             if isinstance(f, p.TranscriptFinal)]
    assert corpus_word_error_rate(pairs) <= 0.3  # whisper tiny.en on an eSpeak voice
    for final in finals:
        assert isinstance(final, p.TranscriptFinal)
        assert final.prosody.f0_mean_hz and 50 < final.prosody.f0_mean_hz < 400
        assert final.prosody.speaking_rate_wps and 1.0 < final.prosody.speaking_rate_wps < 6.0
        assert 0.0 < final.eou_confidence <= 1.0


async def test_the_agents_own_voice_is_never_taken_for_the_user() -> None:
    reply = piper_utterance("Sure. The museum opens at nine in the morning and closes at six "
                            "in the evening, every day except Monday.").audio
    mic, _ = compose(("wait", 0.5), ("say", "When is the museum open?"), ("wait", 8.0))
    cloud = FakeCloud(reply)
    agent, _device = await run_agent(mic, cloud, echo=True)
    assert len(cloud.of_type(p.TranscriptFinal)) == 1  # the echo made no second turn
    assert not cloud.of_type(p.BargeIn)
    turn_id = cloud.of_type(p.TranscriptFinal)[0].turn_id  # type: ignore[attr-defined]
    assert agent.playout.status(turn_id).samples_played == reply.size  # all of it played
    assert agent.onset.ducks == 0  # and without a gap


async def test_talking_over_the_reply_silences_the_speaker_within_100_ms() -> None:
    reply = piper_utterance("Once upon a time there was a brave little dog who lived by the "
                            "sea, and every morning he ran along the beach.").audio
    mic, said = compose(("wait", 0.5), ("say", "Tell me a story."), ("wait", 3.0),
                        ("say", "Stop, what time is it?"), ("wait", 2.0))
    cloud = FakeCloud(reply, "Once upon a time there was a brave little dog")
    _agent, device = await run_agent(mic, cloud, echo=True)
    speaker = device.speaker_track
    onset = said[1].start
    assert np.any(speaker[onset - 1600: onset]), "the reply was playing when the user spoke"
    loud_after = np.flatnonzero(np.abs(speaker[onset: said[1].end]) > 0.5 / 32768)
    silent_ms = (loud_after[-1] + 1) * 1000 / PROCESSING_RATE if loud_after.size else 0.0
    assert silent_ms <= 100, f"speaker still playing {silent_ms:.0f} ms after the onset"
    barge = cloud.of_type(p.BargeIn)
    assert len(barge) == 1 and isinstance(barge[0], p.BargeIn)
    played_before_onset = np.count_nonzero(speaker[:onset])
    assert abs(barge[0].samples_played - played_before_onset) <= 0.12 * PROCESSING_RATE
    assert barge[0].heard_text and "dog" not in barge[0].heard_text.split()[-1:]
    finals = cloud.of_type(p.TranscriptFinal)
    assert len(finals) == 2 and "time" in finals[1].text.lower()  # the interruption is answered
