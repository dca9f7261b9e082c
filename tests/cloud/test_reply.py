"""The reply service's scheduling over model instances that step together (fake engines)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from cloud.conversation.ports import Clause, ReplyDone, ReplyRequest
from cloud.engines.llm import ChatMessage, ModelGroup, StepResult, TokenStream
from cloud.engines.reply import ReplyService
from shared.errors import EngineError


class StepLog(ModelGroup):
    """Steps each stream on its own, and records which instances stepped together."""

    def __init__(self) -> None:
        self.steps: list[list[tuple[str, int]]] = []  # (instance, words out before the step)

    def step_together(self, streams: Sequence[TokenStream], max_tokens: int) -> list[StepResult]:
        self.steps.append([(getattr(s, "owner", "?"), s.generated_tokens) for s in streams])
        results: list[StepResult] = []
        for stream in streams:
            try:
                results.append(stream.step())
            except EngineError as exc:
                results.append(exc)
        return results


def grouped_models(fakes: Any, group: StepLog, names: str, script: Any) -> list[Any]:
    llm_cls, _ = fakes

    class Grouped(llm_cls):  # type: ignore[misc, valid-type]
        def __init__(self, name: str) -> None:
            super().__init__(script, step_s=0.002)
            self.name, self.group = name, group

        def start(self, messages: Any, params: Any) -> TokenStream:
            stream = super().start(messages, params)
            stream.owner = self.name  # type: ignore[attr-defined]
            return stream

    return [Grouped(name) for name in names]


def sure(_: Sequence[ChatMessage]) -> str:
    return "Sure thing, the museum opens at nine and it closes at five every day of the week."


async def collect(service: ReplyService, session: str) -> list[Any]:
    request = ReplyRequest(session, 1, (ChatMessage("user", "when do you open?"),),
                           max_tokens=40)
    return [event async for event in service.reply(request)]


async def test_a_first_clause_steps_alone_while_replies_in_progress_advance_together(
        fakes: Any) -> None:
    group = StepLog()
    service = ReplyService(grouped_models(fakes, group, "abcs", sure), spares=1)
    try:
        early = [asyncio.create_task(collect(service, s)) for s in ("a", "b")]
        await asyncio.sleep(0.03)  # both are past their first clause
        late = await collect(service, "c")
        results = [*(await asyncio.gather(*early)), late]
    finally:
        service.close()
    for events in results:
        assert isinstance(events[0], Clause) and events[0].text == "Sure thing,"
        assert isinstance(events[-1], ReplyDone) and events[-1].finish == "stop"
    c_steps = [step for step in group.steps if any(name == "c" for name, _ in step)]
    before_first_clause = [step for step in c_steps if dict(step)["c"] < 2]
    assert before_first_clause and all(len(step) == 1 for step in before_first_clause)
    assert any({"a", "b"} <= {name for name, _ in step} for step in group.steps)


async def test_a_reply_does_not_wait_for_its_sessions_prefill(fakes: Any) -> None:
    llm_cls, _ = fakes

    class SlowPrefill(llm_cls):  # type: ignore[misc, valid-type]
        prefill_steps_done = 0

        def warm(self, messages: Any) -> TokenStream:
            model = self

            class Prefill(TokenStream):
                def step(self) -> str | None:
                    time.sleep(0.002)
                    model.prefill_steps_done += 1
                    return "" if model.prefill_steps_done < 1000 else None

            return Prefill()

    models = [SlowPrefill(sure, step_s=0.002) for _ in range(2)]
    service = ReplyService(models, spares=1)
    try:
        prefill = asyncio.create_task(service.prefill(
            "a", (ChatMessage("user", "when do you"),), 0))
        while models[0].prefill_steps_done + models[1].prefill_steps_done < 3:
            await asyncio.sleep(0.001)
        events = await asyncio.wait_for(collect(service, "a"), 30)
        await prefill  # it ends (cut short), keeping what it evaluated
    finally:
        service.close()
    assert isinstance(events[-1], ReplyDone)
    assert max(m.prefill_steps_done for m in models) < 1000
