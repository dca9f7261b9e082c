"""The conversation logic end to end with fake engines (no Ray, no models): what an edge sees."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest

from cloud.conversation.context import ContextPolicy
from cloud.conversation.ports import MemoryContextStore
from cloud.conversation.session import Conversation, ConversationSettings
from cloud.engines.reply import ReplyService
from cloud.engines.speech import SpeechService
from shared.protocol import (
    BargeIn,
    Cancel,
    Error,
    Message,
    Metrics,
    Prosody,
    ResponseText,
    TranscriptFinal,
    TranscriptPartial,
    TtsChunk,
    TtsEnd,
    TtsStart,
)


class Edge:
    """Drives a Conversation the way the link would, and records what comes back."""

    def __init__(self, llm: Any, tts: Any, settings: ConversationSettings | None = None) -> None:
        self.llm = llm
        self.tts = tts
        spare = type(llm)(llm.script, llm.step_s)
        spare.prompts, spare.warmed = llm.prompts, llm.warmed  # one log for the whole pool
        self.replies = ReplyService([llm, spare])
        self.speech = SpeechService(tts)
        self.sent: list[Message] = []
        self.store = MemoryContextStore()
        self.conv = Conversation("s1", self.replies, self.speech, self._send,
                                 settings=settings, store=self.store)
        self._event = asyncio.Event()

    async def _send(self, msg: Message) -> None:
        self.sent.append(msg)
        self._event.set()

    async def wait_for(self, pred: Any, timeout: float = 5.0) -> Message:
        deadline = time.monotonic() + timeout
        while True:
            for msg in self.sent:
                if pred(msg):
                    return msg
            self._event.clear()
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; sent: {[m.TYPE for m in self.sent]}"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), left)

    async def turn(self, turn_id: int, text: str, **prosody: float) -> list[Message]:
        start = len(self.sent)
        await self.conv.handle(TranscriptFinal(turn_id=turn_id, text=text,
                                               prosody=Prosody(**prosody)))
        await self.wait_for(lambda m: isinstance(m, Metrics) and m.turn_id == turn_id)
        return self.sent[start:]

    def close(self) -> None:
        self.replies.close()
        self.speech.close()


@pytest.fixture
def edge(fake_llm: Any, fake_tts: Any) -> Any:
    e = Edge(fake_llm, fake_tts)
    yield e
    e.close()


def reply_text(msgs: list[Message]) -> str:
    return "".join(m.delta for m in msgs if isinstance(m, ResponseText)).strip()


async def test_a_turn_streams_text_then_audio_in_small_contiguous_chunks(edge: Edge) -> None:
    msgs = await edge.turn(1, "I would like to book a table")
    types = [m.TYPE for m in msgs]
    assert types.index("tts.start") < types.index("response.text") < types.index("tts.chunk")
    for i, m in enumerate(msgs):  # each clause's text says where its speech starts
        if isinstance(m, ResponseText) and not m.final:
            following = next(c for c in msgs[i:] if isinstance(c, TtsChunk))
            assert m.sample_offset == following.sample_offset
    chunks = [m for m in msgs if isinstance(m, TtsChunk)]
    start = next(m for m in msgs if isinstance(m, TtsStart))
    end = next(m for m in msgs if isinstance(m, TtsEnd))
    assert start.sample_rate == 16000 and all(c.sample_rate == 16000 for c in chunks)
    offset = 0
    for i, chunk in enumerate(chunks):
        assert chunk.chunk_index == i and chunk.sample_offset == offset
        assert len(chunk.payload) <= 2 * 1280  # 80 ms of PCM16 at 16 kHz
        offset += len(chunk.payload) // 2
    assert end.total_samples == offset > 16000  # more than a second of speech
    assert "book a table" in reply_text(msgs)
    metrics = next(m for m in msgs if isinstance(m, Metrics))
    assert metrics.stages_ms["first_audio"] >= metrics.stages_ms["first_clause"] > 0


async def test_the_first_clause_is_short_so_audio_starts_early(edge: Edge) -> None:
    msgs = await edge.turn(1, "tell me something about the weather in the mountains")
    first = next(m for m in msgs if isinstance(m, ResponseText))
    assert 2 <= len(first.delta.split()) <= 7
    assert edge.tts.texts[0] == first.delta.strip()


async def test_a_barge_in_stops_the_reply_and_keeps_only_the_heard_words(fakes: Any) -> None:
    llm_cls, tts_cls = fakes
    e = Edge(llm_cls(step_s=0.03), tts_cls(sentence_s=0.05))
    try:
        await e.conv.handle(TranscriptFinal(turn_id=1, text="what is the plan for today"))
        await e.wait_for(lambda m: isinstance(m, TtsChunk))
        stopped = time.monotonic()
        await e.conv.handle(BargeIn(turn_id=1, samples_played=1600, heard_text="You said"))
        n_sent, tokens = len(e.sent), e.llm.tokens_generated
        await asyncio.sleep(0.3)
        assert time.monotonic() - stopped < 0.4
        assert len(e.sent) == n_sent  # nothing more of turn 1 after the barge-in
        assert e.llm.tokens_generated <= tokens + 1  # generation stopped within a step
        assert e.conv.context.exchanges[-1].assistant == "You said"
        await e.turn(2, "and tomorrow")
        prompt = e.llm.prompts[-1]
        assert [m.content for m in prompt[-3:]] == ["what is the plan for today", "You said",
                                                    "and tomorrow"]
    finally:
        e.close()


async def test_a_barge_in_without_words_keeps_the_played_share(edge: Edge) -> None:
    await edge.turn(1, "name three colours")
    # The reply was already sent in full; the edge had played only the first clause's audio.
    first_clause_samples = edge.conv._last.spoken[0].samples  # type: ignore[union-attr]
    await edge.conv.handle(BargeIn(turn_id=1, samples_played=first_clause_samples))
    assert edge.conv.context.exchanges[-1].assistant == edge.conv._last.spoken[0].text  # type: ignore[union-attr]


async def test_an_early_final_cancelled_then_completed_is_answered_in_full(fakes: Any) -> None:
    llm_cls, tts_cls = fakes
    e = Edge(llm_cls(step_s=0.02), tts_cls())
    try:
        await e.conv.handle(TranscriptFinal(turn_id=3, text="Hello!", eou_confidence=0.7))
        await e.wait_for(lambda m: isinstance(m, ResponseText))
        await e.conv.handle(Cancel(turn_id=3, reason="user kept talking"))
        assert e.conv.context.exchanges == []
        msgs = await e.turn(3, "Hello! What time do you close?")
        assert "What time do you close" in reply_text(msgs)
        assert [ex.user for ex in e.conv.context.exchanges] == ["Hello! What time do you close?"]
        assert e.conv.context.exchanges[0].complete
    finally:
        e.close()


async def test_a_later_final_for_the_same_turn_replaces_the_earlier(edge: Edge) -> None:
    await edge.conv.handle(TranscriptFinal(turn_id=5, text="Book a"))
    await edge.turn(5, "Book a table for two")
    assert [ex.user for ex in edge.conv.context.exchanges] == ["Book a table for two"]


async def test_rising_pitch_without_question_mark_is_asked_as_a_question(edge: Edge) -> None:
    await edge.turn(1, "You are open on Sunday", f0_final_slope_hz_per_s=80.0)
    assert edge.llm.prompts[-1][-1].content == "You are open on Sunday?"
    await edge.turn(2, "You are open on Monday", f0_final_slope_hz_per_s=-30.0)
    assert edge.llm.prompts[-1][-1].content == "You are open on Monday"


async def test_fast_speech_gets_a_shorter_answer_spoken_faster(edge: Edge) -> None:
    slow = await edge.turn(1, "tell me about the museum", speaking_rate_wps=2.5)
    fast = await edge.turn(2, "tell me about the museum", speaking_rate_wps=4.5)
    assert len(reply_text(fast).split()) < len(reply_text(slow).split())
    samples = [next(m for m in msgs if isinstance(m, TtsEnd)).total_samples
               for msgs in (slow, fast)]
    words = [len(reply_text(msgs).split()) for msgs in (slow, fast)]
    assert samples[1] / words[1] < samples[0] / words[0]  # fewer samples a word: faster voice


async def test_hostile_messages_get_error_replies_and_the_session_goes_on(edge: Edge) -> None:
    await edge.conv.handle(TtsChunk(turn_id=1, chunk_index=0, sample_rate=16000,
                                    sample_offset=0, payload=b"\0\0"))
    await edge.conv.handle(BargeIn(turn_id=99, samples_played=5))
    await edge.conv.handle(TranscriptFinal(turn_id=1, text="   "))
    errors = [m for m in edge.sent if isinstance(m, Error)]
    assert [e.code for e in errors] == ["unexpected_message", "unknown_turn", "empty_transcript"]
    assert not any(e.fatal for e in errors)
    msgs = await edge.turn(2, "are you still there")
    assert any(isinstance(m, TtsEnd) for m in msgs)


async def test_the_context_stays_within_budget_over_fifty_turns(fakes: Any) -> None:
    llm_cls, tts_cls = fakes
    settings = ConversationSettings(context=ContextPolicy(keep_recent=3, fold_after=4))
    e = Edge(llm_cls(step_s=0.0), tts_cls(sentence_s=0.0), settings)
    try:
        sizes = {}
        for turn in range(1, 51):
            await e.turn(turn, f"this is my message number {turn} about the trip to Lisbon")
            await e.conv.settle()  # the edge plays the reply meanwhile: background work runs
            replies = [p for p in e.llm.prompts if p[0].content.startswith("You are Parley")]
            sizes[turn] = e.llm.count_tokens(replies[-1])
        assert sizes[50] <= 1.3 * sizes[5]
        assert len(e.conv.context.exchanges) <= 8  # bounded, however long the talk
        assert e.conv.context.summary  # older turns live on as a summary
        assert e.llm.warmed  # the folded prefix was warmed in the background
        saved = await e.store.load("s1")
        assert saved is not None and saved["context"]["summary"] == e.conv.context.summary
    finally:
        e.close()


async def test_partials_prefill_the_users_words_before_the_final(edge: Edge) -> None:
    await edge.turn(1, "hello")
    await edge.conv.handle(TranscriptPartial(turn_id=2, seq=0, text="what time do you"))
    for _ in range(100):
        if edge.llm.warmed:
            break
        await asyncio.sleep(0.01)
    assert edge.llm.warmed[-1][-1].content == "what time do you"
    previous = edge.conv.context.exchanges[0]
    assert [m.content for m in edge.llm.warmed[-1][-3:-1]] == ["hello", previous.assistant]
    msgs = await edge.turn(2, "what time do you close")
    assert any(isinstance(m, TtsEnd) for m in msgs)


async def test_the_naive_reply_mode_speaks_the_whole_reply_once_it_is_written(
        fake_llm: Any, fake_tts: Any) -> None:
    e = Edge(fake_llm, fake_tts, ConversationSettings(reply_mode="naive"))
    try:
        msgs = await e.turn(1, "tell me something about the weather in the mountains")
    finally:
        e.close()
    texts = [m for m in msgs if isinstance(m, ResponseText) and not m.final]
    assert len(texts) == 1 and len(e.tts.texts) == 1  # one synthesis of the whole reply
    assert e.tts.texts[0] == texts[0].delta.strip() == reply_text(msgs)
    assert "weather in the mountains" in texts[0].delta
    metrics = next(m for m in msgs if isinstance(m, Metrics))
    assert metrics.stages_ms["first_audio"] >= metrics.stages_ms["total"] * 0.5
