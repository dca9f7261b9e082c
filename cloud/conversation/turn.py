"""One turn, top-down: transcript -> context -> llm clauses -> tts -> audio chunks -> downlink.

``run_turn`` streams the reply's clauses from the model service; each clause is sent as
``response.text`` and handed to speech synthesis at once (the synthesis of clause k overlaps
the generation of clause k+1); audio goes out in order as ``tts.chunk`` messages of
``chunk_ms`` as soon as each clause is synthesized. Cancelling the task stops the generation
(the clause stream is closed) and the pending syntheses, and sends nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from cloud.conversation.clauses import ClausePolicy
from cloud.conversation.ports import (
    Clause,
    ReplyDone,
    ReplyRequest,
    ReplySource,
    SpeechAudio,
    SpeechRequest,
    SpeechSource,
)
from cloud.engines.llm import ChatMessage
from shared.protocol import Message, Metrics, ResponseText, TtsChunk, TtsEnd, TtsStart

Send = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class TurnPlan:
    """Everything one turn needs, decided before any model runs."""

    session_id: str
    turn_id: int
    messages: tuple[ChatMessage, ...]
    max_tokens: int
    clauses: ClausePolicy
    prefix_version: int
    tts_speed: float
    sample_rate: int
    chunk_ms: int = 80
    # "stream": each clause is spoken as soon as it is written. "naive" (the baseline of
    # `parley bench e2e`): the whole reply text first, then one synthesis of all of it.
    reply_mode: str = "stream"


@dataclass(slots=True)
class SpokenClause:
    text: str
    start_sample: int
    samples: int


@dataclass
class TurnRecord:
    """What happened in a turn (filled in while it runs; read after it ends or is cancelled)."""

    turn_id: int
    started: float
    clauses: list[str] = field(default_factory=list)
    spoken: list[SpokenClause] = field(default_factory=list)
    done: ReplyDone | None = None
    first_clause_ms: float | None = None
    first_clause_at_ms: float = 0.0  # the same moment on the model service's clock
    first_audio_ms: float | None = None
    first_speech: SpeechAudio | None = None
    total_samples: int = 0

    @property
    def reply_text(self) -> str:
        """The reply: as the model wrote it when it completed (the next prompt then matches
        the model's cache), else the clauses received."""
        if self.done is not None and self.done.raw_text.strip():
            return self.done.raw_text.strip()
        return " ".join(self.clauses)

    def stages_ms(self, now: float) -> dict[str, float]:
        stages = {"total": (now - self.started) * 1000.0}
        if self.first_clause_ms is not None:
            stages["first_clause"] = self.first_clause_ms
            if self.done is not None:  # the model service's clock, moved onto the turn's
                stages["llm_first_token"] = (self.first_clause_ms - self.first_clause_at_ms
                                             + self.done.ttft_ms)
        if self.first_audio_ms is not None:
            stages["first_audio"] = self.first_audio_ms
        if self.first_speech is not None:
            stages.update(tts_queue=self.first_speech.queue_ms,
                          tts_synth=self.first_speech.synth_ms)
        if self.done is not None:
            stages.update(llm_ttft=self.done.ttft_ms, llm_queue=self.done.queue_ms,
                          prompt_tokens=float(self.done.prompt_tokens),
                          cached_tokens=float(self.done.cached_tokens),
                          reply_tokens=float(self.done.generated_tokens))
        return {k: max(0.0, round(v, 2)) for k, v in stages.items()}


async def run_turn(plan: TurnPlan, replies: ReplySource, speech: SpeechSource, send: Send,
                   record: TurnRecord) -> TurnRecord:
    """Run one turn to completion (or until cancelled); ``record`` is filled in as it goes."""
    pending: asyncio.Queue[tuple[str, asyncio.Task[SpeechAudio]] | None] = asyncio.Queue()
    tasks: list[asyncio.Task[SpeechAudio]] = []
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(_generate(plan, replies, speech, send, record, pending, tasks))
            group.create_task(_play(plan, send, record, pending))
    finally:
        for task in tasks:
            task.cancel()
    await send(Metrics(turn_id=plan.turn_id, stages_ms=record.stages_ms(time.monotonic())))
    return record


async def _generate(plan: TurnPlan, replies: ReplySource, speech: SpeechSource, send: Send,
                    record: TurnRecord,
                    pending: asyncio.Queue[tuple[str, asyncio.Task[SpeechAudio]] | None],
                    tasks: list[asyncio.Task[SpeechAudio]]) -> None:
    request = ReplyRequest(session_id=plan.session_id, turn_id=plan.turn_id,
                           messages=plan.messages, max_tokens=plan.max_tokens,
                           prefix_version=plan.prefix_version, clauses=plan.clauses)
    stream = replies.reply(request)
    held: list[Clause] = []
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        async for event in stream:
            if isinstance(event, ReplyDone):
                record.done = event
            elif plan.reply_mode == "naive":
                held.append(event)
            else:
                _on_clause(plan, speech, record, event, pending, tasks)
    if held:
        whole = Clause(0, " ".join(c.text for c in held), held[-1].at_ms)
        _on_clause(plan, speech, record, whole, pending, tasks)
    await pending.put(None)


def _on_clause(plan: TurnPlan, speech: SpeechSource, record: TurnRecord, clause: Clause,
               pending: asyncio.Queue[tuple[str, asyncio.Task[SpeechAudio]] | None],
               tasks: list[asyncio.Task[SpeechAudio]]) -> None:
    if record.first_clause_ms is None:
        record.first_clause_ms = (time.monotonic() - record.started) * 1000.0
        record.first_clause_at_ms = clause.at_ms
    record.clauses.append(clause.text)
    request = SpeechRequest(session_id=plan.session_id, turn_id=plan.turn_id, text=clause.text,
                            speed=plan.tts_speed, sample_rate=plan.sample_rate,
                            first=clause.index == 0)
    task = asyncio.create_task(speech.speak(request))
    tasks.append(task)
    pending.put_nowait((clause.text, task))


async def _play(plan: TurnPlan, send: Send, record: TurnRecord,
                pending: asyncio.Queue[tuple[str, asyncio.Task[SpeechAudio]] | None]) -> None:
    chunk_bytes = 2 * max(1, plan.sample_rate * plan.chunk_ms // 1000)
    index = 0
    started = False
    while (item := await pending.get()) is not None:
        text, task = item
        audio = await task
        if record.first_speech is None:
            record.first_speech = audio
        if not started:
            await send(TtsStart(turn_id=plan.turn_id, sample_rate=plan.sample_rate))
            started = True
        record.spoken.append(SpokenClause(text, record.total_samples, audio.samples))
        # The text goes with its audio, stamped with where its speech starts, so the edge
        # knows which words the user heard if they interrupt.
        await send(ResponseText(turn_id=plan.turn_id, delta=text + " ",
                                sample_offset=record.total_samples))
        for at in range(0, len(audio.pcm16), chunk_bytes):
            await send(TtsChunk(turn_id=plan.turn_id, chunk_index=index,
                                sample_rate=plan.sample_rate,
                                sample_offset=record.total_samples + at // 2,
                                payload=audio.pcm16[at:at + chunk_bytes]))
            if index == 0:
                record.first_audio_ms = (time.monotonic() - record.started) * 1000.0
            index += 1
        record.total_samples += audio.samples
    await send(ResponseText(turn_id=plan.turn_id, delta="", final=True,
                            sample_offset=record.total_samples))
    await send(TtsEnd(turn_id=plan.turn_id, total_samples=record.total_samples))


def heard_text(record: TurnRecord, samples_played: int) -> str:
    """The words of the reply the user heard after ``samples_played`` samples of its audio:
    whole clauses played, then the played share of the clause that was cut."""
    words: list[str] = []
    for clause in record.spoken:
        clause_words = clause.text.split()
        played = samples_played - clause.start_sample
        if played >= clause.samples:
            words += clause_words
            continue
        if played > 0 and clause.samples > 0:
            words += clause_words[: int(len(clause_words) * played / clause.samples)]
        break
    return " ".join(words)
