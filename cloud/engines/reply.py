"""The reply service: a pool of model instances, a step scheduler, clause streams out.

Each session sticks to one model instance (its KV cache keeps the session's prompt prefix, so a
turn only prefills what is new). Spare instances do the background work (context summaries, and
preparing a session's folded prefix, adopted by its next turn), so it never evicts a session's
cache. Everything runs on one :class:`StepWorker` thread: turns that have not produced their
first clause go first (``URGENT``, oldest first), then the rest of the replies (``NORMAL``),
then background work, which only uses the model when no reply needs it. When the instances
are sequences of one context (a ``ModelGroup``), the replies in progress advance together, one
token each per step (one batch). Tokens are cut into clauses here, so only clauses leave the
service.
"""

from __future__ import annotations

import asyncio
import threading
import time
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from typing import Any

from cloud.conversation.clauses import ClauseSegmenter
from cloud.conversation.ports import (
    Clause,
    ReplyDone,
    ReplyEvent,
    ReplyRequest,
    ReplySource,
)
from cloud.engines.cpu import threads_for_burst
from cloud.engines.llm import (
    ChatMessage,
    LanguageModel,
    ModelGroup,
    SamplingParams,
    StepResult,
    TokenStream,
)
from cloud.engines.worker import BACKGROUND, NORMAL, URGENT, Batch, Job, StepWorker
from shared.errors import EngineError


class ModelPool:
    """Which model instance serves which session, and which are spare.

    A session keeps its instance (and so its cached prompt prefix) from turn to turn. Spare
    instances run background work: summaries, and *preparing* a session's next prefix (after
    its context was folded) without touching the instance the session uses meanwhile. A reply
    whose ``prefix_version`` matches a prepared spare adopts it: the spare becomes the
    session's instance and the session's old instance becomes a spare. Thread-safe.
    """

    def __init__(self, models: Sequence[LanguageModel], spares: int = 1) -> None:
        if len(models) < 2 or not 0 < spares < len(models):
            raise ValueError("a model pool needs a serving instance and a spare")
        self.models = list(models)
        self._lock = threading.Lock()
        self._free = self.models[: len(models) - spares]  # serving, not yet owned
        self._spares = self.models[len(models) - spares:]
        self._owner: OrderedDict[str, LanguageModel] = OrderedDict()
        self._prepared: dict[int, tuple[str, int]] = {}  # id(spare) -> (session, version)
        self._claims: dict[int, int] = {}  # id(spare) -> how many jobs were given it

    def for_session(self, session_id: str, version: int = 0) -> LanguageModel:
        with self._lock:
            ready = next((m for m in self._spares
                          if self._prepared.get(id(m)) == (session_id, version)), None)
            if ready is not None:
                self._swap_in(session_id, ready)
            elif session_id not in self._owner:
                self._owner[session_id] = self._free.pop() if self._free else \
                    self._owner.popitem(last=False)[1]
            self._owner.move_to_end(session_id)
            return self._owner[session_id]

    def _swap_in(self, session_id: str, ready: LanguageModel) -> None:
        del self._prepared[id(ready)]
        self._spares.remove(ready)
        old = self._owner.get(session_id)
        if old is not None:
            self._spares.append(old)
        self._owner[session_id] = ready

    def spare(self) -> tuple[LanguageModel, int]:
        """A spare for background work (preferring one holding no prepared prefix) and its
        claim number; whatever it held is forgotten (the job will overwrite its cache)."""
        with self._lock:
            unprepared = [m for m in self._spares if id(m) not in self._prepared]
            model = (unprepared or self._spares)[0]
            self._spares.remove(model)
            self._spares.append(model)  # round robin among equals
            self._prepared.pop(id(model), None)
            claim = self._claims[id(model)] = self._claims.get(id(model), 0) + 1
            return model, claim

    def prepared(self, model: LanguageModel, claim: int, owner: tuple[str, int]) -> None:
        """``model`` now holds ``owner``'s next prefix, unless another job claimed it since."""
        with self._lock:
            if self._claims.get(id(model)) == claim and model in self._spares:
                self._prepared[id(model)] = owner

    def release(self, session_id: str) -> None:
        with self._lock:
            model = self._owner.pop(session_id, None)
            if model is not None:
                self._free.append(model)
            for key, owner in list(self._prepared.items()):
                if owner[0] == session_id:
                    del self._prepared[key]


class _Emitter:
    """Hands items from the worker thread to an asyncio queue."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def put(self, item: Any) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


class _StreamJob(Job):
    """A job that advances one token stream on one model instance."""

    def __init__(self, priority: int, model: LanguageModel, batch: Batch | None) -> None:
        super().__init__(priority, resource=id(model))
        self.model = model
        self.batch = batch
        self.stream: TokenStream | None = None
        self.received = time.perf_counter()
        self.first_step: float | None = None

    @property
    def queue_ms(self) -> float:
        """How long the job waited for its first step."""
        return ((self.first_step or time.perf_counter()) - self.received) * 1000.0

    def stepping(self) -> TokenStream:
        """The stream, about to be stepped."""
        if self.first_step is None:
            self.first_step = time.perf_counter()
        return self.open()

    def open(self) -> TokenStream:
        """The job's stream, started when the worker first looks at it (tokenizing the
        prompt: no compute yet)."""
        if self.stream is None:
            self.stream = self._start()
        return self.stream

    @abstractmethod
    def _start(self) -> TokenStream:
        """Start the stream (tokenizes the prompt; no compute)."""

    @abstractmethod
    def absorb(self, piece: str | None) -> bool:
        """Take what one step of the stream returned; True once the job is finished."""

    def step(self) -> bool:
        return self.absorb(self.stepping().step())


class _GroupBatch(Batch):
    """Jobs on the instances of one ``ModelGroup``, stepped together.

    A turn still waiting for its first clause (``URGENT``) steps alone, oldest first: on a
    loaded CPU a batch costs nearly as much per token as single steps, so sharing steps would
    only delay the oldest first clause. The rest of the replies (``NORMAL``) and background
    work advance together, a token per job per step (their prompt chunks only when the lead
    evaluates a prompt itself). ``budgets`` caps the prompt tokens of a step by the lead's
    priority. Reply steps use up to ``burst_threads`` threads while cores are idle."""

    def __init__(self, group: ModelGroup, budgets: dict[int, int], burst_threads: int) -> None:
        self._group = group
        self._budgets = budgets
        self._burst = burst_threads

    def choose(self, lead: Job, candidates: Sequence[Job]) -> list[Job]:
        if lead.priority == URGENT:
            return []
        lead_prompts = _prompt_left(lead) > 0
        return [job for job in candidates if job.priority == lead.priority
                and (lead_prompts or _prompt_left(job) == 0)]

    def step(self, jobs: Sequence[Job]) -> list[bool | BaseException]:
        """A job that cannot start (its prompt does not fit...) or fails taking its result
        ends alone, with its own error; only a failure of the shared step ends them all."""
        outcomes: list[bool | BaseException] = [True] * len(jobs)
        stepping: list[tuple[int, _StreamJob, TokenStream]] = []
        for i, job in enumerate(jobs):
            assert isinstance(job, _StreamJob)
            try:
                stepping.append((i, job, job.stepping()))
            except Exception as exc:
                outcomes[i] = exc
        if not stepping:
            return outcomes
        budget = self._budgets.get(jobs[0].priority, 16)
        self._group.use_threads(self._threads(jobs[0], stepping))
        try:
            results = self._group.step_together([s for _, _, s in stepping], budget)
        except Exception as exc:  # the shared step failed: it ends every job in it
            for i, _, _ in stepping:
                outcomes[i] = exc
            return outcomes
        for (i, job, _), result in zip(stepping, results, strict=True):
            outcomes[i] = _absorbed(job, result)
        return outcomes

    def _threads(self, lead: Job, stepping: list[tuple[int, _StreamJob, TokenStream]],
                 ) -> int | None:
        """More threads for the replies' steps while other processes leave cores idle (a
        first clause sooner; the rest done sooner, so the next first clause waits less);
        background work keeps to the configured count."""
        if lead.priority == BACKGROUND or self._burst <= 1:
            return None
        prompts = bool(stepping) and stepping[0][2].prompt_left > 0
        return threads_for_burst(self._burst, PROMPT_BURST_PATIENCE_S if prompts else 0.0)


def _prompt_left(job: Job) -> int:
    """The job's prompt tokens still to evaluate. A job whose stream cannot start counts as
    ready to generate: it joins the step, where starting fails again and ends it alone."""
    assert isinstance(job, _StreamJob)
    try:
        return job.open().prompt_left
    except Exception:
        return 0


def _absorbed(job: _StreamJob, result: StepResult) -> bool | BaseException:
    """What one step did to ``job``: finished or not, or the error that ended it."""
    if isinstance(result, EngineError):
        return result
    try:
        return job.absorb(result)
    except Exception as exc:
        return exc


class _ReplyJob(_StreamJob):
    def __init__(self, model: LanguageModel, request: ReplyRequest, emit: _Emitter,
                 batch: Batch | None, rest_after_first_s: float = 0.0) -> None:
        super().__init__(URGENT, model, batch)
        self._rest_after_first_s = rest_after_first_s
        self._request = request
        self._emit = emit
        self._segmenter = ClauseSegmenter(request.clauses)
        self._ttft_ms: float | None = None

    def _start(self) -> TokenStream:
        params = SamplingParams(max_tokens=self._request.max_tokens)
        return self.model.start(self._request.messages, params)

    def absorb(self, piece: str | None) -> bool:
        stream = self.open()
        if piece is None:
            cut_short = stream.generated_tokens >= self._request.max_tokens
            if cut_short and self._segmenter.sentences_out:
                self._segmenter.drop_rest()  # never end on half a sentence after a whole one
            else:
                self._send_clauses(self._segmenter.flush())
            return self._done("length" if cut_short else "stop")
        if piece and self._ttft_ms is None:
            self._ttft_ms = self._ms()
        self._send_clauses(self._segmenter.push(piece))
        if self._segmenter.done:
            stream.close()
            return self._done("sentences")
        return False

    def _send_clauses(self, texts: list[str]) -> None:
        first_index = self._segmenter.clauses_out - len(texts)
        for offset, text in enumerate(texts):
            self._emit.put(Clause(index=first_index + offset, text=text, at_ms=self._ms()))
            if first_index + offset == 0:  # leave the CPU to the first clause's synthesis
                self.resume_at = time.monotonic() + self._rest_after_first_s
            self.priority = NORMAL

    def _done(self, finish: str) -> bool:
        stream = self.open()
        self._emit.put(ReplyDone(prompt_tokens=stream.prompt_tokens,
                                 cached_tokens=stream.cached_tokens,
                                 generated_tokens=stream.generated_tokens,
                                 ttft_ms=self._ttft_ms or self._ms(),
                                 queue_ms=self.queue_ms, finish=finish,
                                 raw_text=self._segmenter.raw_out))
        return True

    def finished(self, error: BaseException | None) -> None:
        if self.stream is not None:
            self.stream.close()
        if error is not None:
            self._emit.put(error)

    def _ms(self) -> float:
        return (time.perf_counter() - self.received) * 1000.0


class _CollectJob(_StreamJob):
    """Background generation or prefill (often on a spare instance); its result is the whole
    text. ``on_done`` runs on the worker thread once it completed (before the caller hears)."""

    def __init__(self, model: LanguageModel, stream_factory: Any, emit: _Emitter,
                 batch: Batch | None, on_done: Any = None) -> None:
        super().__init__(BACKGROUND, model, batch)
        self._factory = stream_factory
        self._on_done = on_done
        self._pieces: list[str] = []
        self.emit = emit

    def _start(self) -> TokenStream:
        stream: TokenStream = self._factory(self.model)
        return stream

    def absorb(self, piece: str | None) -> bool:
        if piece is None:
            return True
        self._pieces.append(piece)
        return False

    def finished(self, error: BaseException | None) -> None:
        if self.stream is not None:
            self.stream.close()
        if error is None and not self.cancelled and self._on_done is not None:
            self._on_done()
        self.emit.put(error if error is not None else "".join(self._pieces).strip())


# Tokens per step, by the priority of the job leading the step: a first clause takes its
# whole new prompt at once; background prompts go in small chunks, so a new turn arriving
# meanwhile waits little for the step in progress.
STEP_BUDGETS = {URGENT: 32, NORMAL: 16, BACKGROUND: 8}
# Before a prompt step (the costliest), a core found busy is looked at again after this long:
# two threads save ~80 ms on a first clause's prompt.
PROMPT_BURST_PATIENCE_S = 0.001


class ReplyService(ReplySource):
    """Clause streams, summaries and cache warming over a pool of model instances, all run by
    one worker thread (the instances may share one compute context)."""

    def __init__(self, models: Sequence[LanguageModel], spares: int = 1, name: str = "llm",
                 budgets: dict[int, int] | None = None, burst_threads: int = 1,
                 rest_after_first_clause_s: float = 0.0) -> None:
        """``burst_threads``: threads a reply's steps may use while CPU cores are idle (for
        instances that share a ``ModelGroup``). ``rest_after_first_clause_s``: a reply does
        not step for this long after its first clause, so that the clause's speech synthesis
        (in another process, on the same cores) gets the CPU; the next clause is not needed
        before the first one has played."""
        self._rest_after_first_s = rest_after_first_clause_s
        self.pool = ModelPool(models, spares)
        budgets = budgets or STEP_BUDGETS
        self._batches: dict[int, Batch] = {}
        for model in models:
            if model.group is not None and id(model.group) not in self._batches:
                self._batches[id(model.group)] = _GroupBatch(model.group, budgets,
                                                             burst_threads)
        self._burst = burst_threads
        self._prefills: dict[int, _CollectJob] = {}  # id(instance) -> its prefill job
        self._worker = StepWorker(name)

    def _batch(self, model: LanguageModel) -> Batch | None:
        return self._batches.get(id(model.group)) if model.group is not None else None

    def warm_up(self, prefix: Sequence[ChatMessage] = ()) -> None:
        """Pay start-up costs now, and put the prompt prefix every session shares (the system
        prompt) in each instance's cache, so a session's first turn only prefills its words.
        Call before serving requests."""
        warmed: set[int] = set()
        for model in self.pool.models:
            compute = id(model.group if model.group is not None else model)
            if compute not in warmed:  # instances of one group share their start-up costs
                warmed.add(compute)
                self._warm_up_compute(model)
            if prefix:
                stream = model.warm(prefix)
                while stream.step() is not None:
                    pass

    def _warm_up_compute(self, model: LanguageModel) -> None:
        if model.group is None or self._burst <= 1:
            model.warm_up()
            return
        model.group.use_threads(self._burst)  # starts the burst threads too
        try:
            model.warm_up()
        finally:
            model.group.use_threads(None)

    async def reply(self, request: ReplyRequest) -> AsyncIterator[ReplyEvent]:
        emit = _Emitter()
        model = self.pool.for_session(request.session_id, request.prefix_version)
        prefill = self._prefills.pop(id(model), None)
        if prefill is not None:  # it holds the instance; what it evaluated stays cached
            prefill.cancel()
        job = _ReplyJob(model, request, emit, self._batch(model), self._rest_after_first_s)
        self._worker.submit(job)
        try:
            while True:
                item = await emit.queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, ReplyDone):
                    return
        finally:
            job.cancel()
            self._worker.wake()

    async def summarize(self, session_id: str, messages: tuple[ChatMessage, ...],
                        max_tokens: int) -> str:
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
        model, _ = self.pool.spare()
        return await self._collect(_CollectJob(model, lambda m: m.start(messages, params),
                                               _Emitter(), self._batch(model)))

    async def warm(self, session_id: str, messages: tuple[ChatMessage, ...],
                   version: int) -> None:
        model, claim = self.pool.spare()
        await self._collect(_CollectJob(
            model, lambda m: m.warm(messages), _Emitter(), self._batch(model),
            on_done=lambda: self.pool.prepared(model, claim, (session_id, version))))

    async def prefill(self, session_id: str, messages: tuple[ChatMessage, ...],
                      version: int) -> None:
        # On the session's own instance: the session's next reply cancels it (its request
        # may arrive before the cancellation of this one does).
        model = self.pool.for_session(session_id, version)
        job = _CollectJob(model, lambda m: m.warm(messages), _Emitter(), self._batch(model))
        self._prefills[id(model)] = job
        try:
            await self._collect(job)
        finally:
            if self._prefills.get(id(model)) is job:
                del self._prefills[id(model)]

    async def _collect(self, job: _CollectJob) -> str:
        self._worker.submit(job)
        try:
            item = await job.emit.queue.get()
        finally:
            job.cancel()
            self._worker.wake()
        if isinstance(item, BaseException):
            raise item
        return str(item)

    def end_session(self, session_id: str) -> None:
        self.pool.release(session_id)

    def close(self, timeout_s: float = 5.0) -> bool:
        """Stop the worker; True once its thread ended (a step in progress is finished
        first): only then may the model instances be freed."""
        return self._worker.stop(timeout_s)

