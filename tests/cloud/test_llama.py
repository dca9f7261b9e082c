"""The llama.cpp engine with the real model: several sessions' sequences in one context."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from cloud.conversation.ports import ReplyDone, ReplyRequest
from cloud.engines import llama
from cloud.engines.llama import LlamaEngine
from cloud.engines.llm import ChatMessage, SamplingParams, TokenStream
from cloud.engines.reply import ReplyService
from shared.errors import EngineError

SYSTEM = ChatMessage("system", "You are a helpful assistant. Answer in one short sentence.")
GREEDY = SamplingParams(max_tokens=16, temperature=0.0)


@pytest.fixture(scope="module")
def engine(cloud_models: None) -> Iterator[LlamaEngine]:
    llama = LlamaEngine(sequences=3, n_ctx=512)
    yield llama
    llama.close()


def ask(question: str) -> list[ChatMessage]:
    return [SYSTEM, ChatMessage("user", question)]


def run_alone(stream: TokenStream) -> str:
    pieces = []
    while (piece := stream.step()) is not None:
        pieces.append(piece)
    return "".join(pieces)


def test_replies_computed_together_are_the_replies_computed_alone(engine: LlamaEngine) -> None:
    questions = ["Why is the sky blue?", "What is a good name for a cat?"]
    alone = [run_alone(engine.models[0].start(ask(q), GREEDY)) for q in questions]
    streams = [model.start(ask(q), GREEDY) for model, q in zip(engine.models[1:], questions,
                                                                 strict=True)]
    together = ["", ""]
    live = [0, 1]
    while live:
        results = engine.step_together([streams[i] for i in live], max_tokens=32)
        for i, result in zip(list(live), results, strict=True):
            assert not isinstance(result, EngineError)
            if result is None:
                live.remove(i)
            else:
                together[i] += result
    assert together == alone
    assert all(len(text.split()) >= 3 for text in together)


def test_a_sessions_next_turn_only_evaluates_what_is_new(engine: LlamaEngine) -> None:
    model = engine.models[2]
    first = model.start(ask("Name a fruit."), GREEDY)
    reply = run_alone(first).strip()
    follow_up = [*ask("Name a fruit."), ChatMessage("assistant", reply),
                 ChatMessage("user", "And a vegetable?")]
    second = model.start(follow_up, GREEDY)
    assert run_alone(second).strip()
    assert second.cached_tokens >= first.prompt_tokens  # the first turn and its reply
    assert second.prompt_tokens - second.cached_tokens < 20


def test_a_prompt_longer_than_the_context_is_refused(engine: LlamaEngine) -> None:
    with pytest.raises(EngineError, match="does not fit"):
        engine.models[0].start(ask("word " * 600), GREEDY)


def test_an_undecodable_piece_does_not_swallow_the_text_after_it(
        engine: LlamaEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    real_piece = engine.piece
    broken: list[int] = []

    def piece(token: int) -> bytes:  # the first generated piece starts with a stray byte
        if broken:
            return real_piece(token)
        broken.append(token)
        return b"\xff" + real_piece(token)

    monkeypatch.setattr(engine, "piece", piece)
    text = run_alone(engine.models[0].start(ask("Name a color."), GREEDY))
    assert text.startswith("\ufffd")
    assert len(text.split()) >= 3


def test_a_token_longer_than_the_piece_buffer_comes_out_whole(
        cloud_models: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llama, "PIECE_BYTES", 2)
    small = LlamaEngine(n_ctx=256)
    try:
        words = "Wonderful ================================================================"
        prompt = small.prompt([ChatMessage("user", words)], generation_prompt=False)
        assert words.encode() in b"".join(small.piece(token) for token in prompt)
    finally:
        small.close()


async def test_a_prefill_too_long_for_the_context_fails_alone_and_replies_go_on(
        cloud_models: None) -> None:
    small = LlamaEngine(sequences=2, n_ctx=256)
    service = ReplyService(small.models, spares=1)
    try:
        with pytest.raises(EngineError, match="does not fit"):
            await asyncio.wait_for(service.prefill(
                "a", (SYSTEM, ChatMessage("user", "word " * 300)), 0), 30)
        request = ReplyRequest("a", 1, tuple(ask("Name a fruit.")), max_tokens=16)
        events = await asyncio.wait_for(_collect(service, request), 60)
    finally:
        stopped = service.close()
        if stopped:
            small.close()
    assert isinstance(events[-1], ReplyDone) and events[-1].generated_tokens > 0


async def _collect(service: ReplyService, request: ReplyRequest) -> list[object]:
    return [event async for event in service.reply(request)]
