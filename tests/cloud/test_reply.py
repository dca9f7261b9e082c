"""The reply service's scheduling over model instances that step together (fake engines)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from cloud.config import load_settings
from cloud.conversation.ports import Clause, ReplyDone, ReplyRequest
from cloud.engines.llm import ChatMessage, ModelGroup, StepResult, TokenStream
from cloud.engines.reply import ReplyService
from shared.errors import ConfigError, EngineError


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


def grouped_models(fakes: Any, group: StepLog, names: str, script: Any,
                   context: int = 1000) -> list[Any]:
    """Instances of one group that refuse a prompt longer than ``context``, as llama.cpp's."""
    llm_cls, _ = fakes

    class Grouped(llm_cls):  # type: ignore[misc, valid-type]
        def __init__(self, name: str) -> None:
            super().__init__(script, step_s=0.002)
            self.name, self.group = name, group

        def start(self, messages: Any, params: Any) -> TokenStream:
            self._fit(messages)
            stream = super().start(messages, params)
            stream.owner = self.name  # type: ignore[attr-defined]
            return stream

        def warm(self, messages: Any) -> TokenStream:
            self._fit(messages)
            return super().warm(messages)

        def _fit(self, messages: Any) -> None:
            if (n := self.count_tokens(messages)) > context:
                raise EngineError(f"prompt of {n} tokens does not fit the {context}-token "
                                  "context")

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


LONG = (ChatMessage("user", "word " * 200),)


async def test_a_background_prompt_too_long_for_the_context_fails_alone(fakes: Any) -> None:
    service = ReplyService(grouped_models(fakes, StepLog(), "ab", sure, context=100), spares=1)
    try:
        with pytest.raises(EngineError, match="does not fit"):
            await asyncio.wait_for(service.prefill("a", LONG, 0), 5)
        with pytest.raises(EngineError, match="does not fit"):
            await asyncio.wait_for(service.summarize("a", LONG, 20), 5)
        events = await asyncio.wait_for(collect(service, "a"), 5)
    finally:
        service.close()
    assert isinstance(events[-1], ReplyDone) and events[-1].finish == "stop"


async def test_a_job_that_cannot_start_does_not_fail_the_jobs_stepped_with_it(
        fakes: Any) -> None:
    def picky(messages: Sequence[ChatMessage]) -> str:
        if "roles" in messages[-1].content:
            raise ValueError("the chat template wants alternating roles")
        return sure(messages)

    models = grouped_models(fakes, StepLog(), "abc", picky)
    service = ReplyService(models, spares=2)
    try:
        good, bad = await asyncio.wait_for(asyncio.gather(
            service.summarize("a", (ChatMessage("user", "sum it up"),), 40),
            service.summarize("b", (ChatMessage("user", "roles"),), 40),
            return_exceptions=True), 5)
        events = await asyncio.wait_for(collect(service, "a"), 5)
    finally:
        service.close()
    assert good == sure(())
    assert isinstance(bad, ValueError) and "alternating roles" in str(bad)
    assert isinstance(events[-1], ReplyDone)


def test_warming_up_pays_a_groups_start_up_once_and_warms_every_instance(fakes: Any) -> None:
    models = grouped_models(fakes, StepLog(), "abc", sure)
    service = ReplyService(models, spares=1, burst_threads=2)
    prefix = [ChatMessage("system", "Be brief.")]
    try:
        service.warm_up(prefix)
    finally:
        service.close()
    assert sum(len(m.prompts) for m in models) == 1  # one tiny generation for the group
    assert all(m.warmed == [prefix] for m in models)


async def test_close_says_whether_the_worker_is_still_in_a_step(fakes: Any) -> None:
    llm_cls, _ = fakes
    entered, release = threading.Event(), threading.Event()

    class Stuck(llm_cls):  # type: ignore[misc, valid-type]
        def warm(self, messages: Any) -> TokenStream:
            class Held(TokenStream):
                def step(self) -> str | None:
                    entered.set()
                    release.wait(5)
                    return None

            return Held()

    service = ReplyService([Stuck(sure), Stuck(sure)], spares=1)
    task = asyncio.create_task(service.warm("a", LONG, 1))
    try:
        while not entered.is_set():
            await asyncio.sleep(0.001)
        assert service.close(timeout_s=0.05) is False  # the engine must stay open
    finally:
        release.set()
    assert service.close() is True
    await asyncio.wait_for(task, 5)


def test_a_context_too_small_for_the_prompt_and_a_reply_is_one_clear_line() -> None:
    with pytest.raises(ConfigError, match="llm_context_tokens") as refused:
        load_settings(llm_context_tokens=512, max_prompt_tokens=500, max_reply_tokens=36)
    assert "\n" not in str(refused.value)
    assert load_settings(llm_context_tokens=1024, max_prompt_tokens=600)


async def test_a_reply_rests_after_its_first_clause_so_its_synthesis_gets_the_cpu(
        fakes: Any) -> None:
    llm_cls, _ = fakes
    events = {}
    for rest in (0.0, 0.25):
        service = ReplyService([llm_cls(sure, step_s=0.002), llm_cls(sure, step_s=0.002)],
                               spares=1, rest_after_first_clause_s=rest)
        try:
            events[rest] = [e for e in await collect(service, "s") if isinstance(e, Clause)]
        finally:
            service.close()
    def gap_ms(clauses: list[Clause]) -> float:
        return clauses[1].at_ms - clauses[0].at_ms
    assert [c.text for c in events[0.0]] == [c.text for c in events[0.25]]  # same reply
    assert gap_ms(events[0.25]) >= 250.0
