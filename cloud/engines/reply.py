"""The reply service: a pool of model instances, a step scheduler, clause streams out.

Each session sticks to one model instance (its KV cache keeps the session's prompt prefix, so a
turn only prefills what is new). Spare instances do the background work (context summaries, and
preparing a session's folded prefix, adopted by its next turn), so it never evicts a session's
cache. Replies run on one :class:`StepWorker`:
turns that have not produced their first clause go first (``URGENT``), then the rest of the
replies (``NORMAL``) interleaved token by token. Background work runs on a second worker whose
thread has a low OS priority, so it uses the CPU only when replies and speech leave it idle.
Tokens are cut into clauses here, so only clauses leave the service.
"""

from __future__ import annotations

import asyncio
import threading
import time
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
from cloud.engines.llm import ChatMessage, LanguageModel, SamplingParams, TokenStream
from cloud.engines.worker import (
    BACKGROUND,
    NORMAL,
    URGENT,
    Job,
    Lane,
    ResourceLocks,
    StepWorker,
)


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


class _ReplyJob(Job):
    def __init__(self, model: LanguageModel, request: ReplyRequest, emit: _Emitter) -> None:
        super().__init__(URGENT, resource=id(model))
        self._model = model
        self._request = request
        self._emit = emit
        self._segmenter = ClauseSegmenter(request.clauses)
        self._stream: TokenStream | None = None
        self._received = time.perf_counter()
        self._queue_ms = 0.0
        self._ttft_ms: float | None = None

    def step(self) -> bool:
        if self._stream is None:
            self._queue_ms = self._ms()
            params = SamplingParams(max_tokens=self._request.max_tokens)
            self._stream = self._model.start(self._request.messages, params)
        piece = self._stream.step()
        if piece is None:
            cut_short = self._at_limit()
            rest = self._segmenter.flush()
            if not (cut_short and self._segmenter.sentences_out):
                self._send_clauses(rest)  # but never end on half a sentence after a whole one
            return self._done("length" if cut_short else "stop")
        if piece and self._ttft_ms is None:
            self._ttft_ms = self._ms()
        self._send_clauses(self._segmenter.push(piece))
        if self._segmenter.done:
            self._stream.close()
            return self._done("sentences")
        return False

    def _send_clauses(self, texts: list[str]) -> None:
        first_index = self._segmenter.clauses_out - len(texts)
        for offset, text in enumerate(texts):
            self._emit.put(Clause(index=first_index + offset, text=text, at_ms=self._ms()))
            self.priority = NORMAL

    def _at_limit(self) -> bool:
        return self._stream is not None and \
            self._stream.generated_tokens >= self._request.max_tokens

    def _done(self, finish: str) -> bool:
        stream = self._stream
        assert stream is not None
        self._emit.put(ReplyDone(prompt_tokens=stream.prompt_tokens,
                                 cached_tokens=stream.cached_tokens,
                                 generated_tokens=stream.generated_tokens,
                                 ttft_ms=self._ttft_ms or self._ms(), queue_ms=self._queue_ms,
                                 finish=finish))
        return True

    def finished(self, error: BaseException | None) -> None:
        if self._stream is not None:
            self._stream.close()
        if error is not None:
            self._emit.put(error)

    def _ms(self) -> float:
        return (time.perf_counter() - self._received) * 1000.0


class _CollectJob(Job):
    """Background generation or prefill on a spare instance; its result is the whole text.
    ``on_done`` runs on the worker thread once it completed (before the caller hears)."""

    def __init__(self, model: LanguageModel, stream_factory: Any, emit: _Emitter,
                 on_done: Any = None) -> None:
        super().__init__(BACKGROUND, resource=id(model))
        self._model = model
        self._factory = stream_factory
        self._on_done = on_done
        self._stream: TokenStream | None = None
        self._pieces: list[str] = []
        self.emit = emit

    def step(self) -> bool:
        if self._stream is None:
            self._stream = self._factory(self._model)
        piece = self._stream.step()
        if piece is None:
            return True
        self._pieces.append(piece)
        return False

    def finished(self, error: BaseException | None) -> None:
        if self._stream is not None:
            self._stream.close()
        if error is None and not self.cancelled and self._on_done is not None:
            self._on_done()
        self.emit.put(error if error is not None else "".join(self._pieces).strip())


class ReplyService(ReplySource):
    """Clause streams, summaries and cache warming over a pool of model instances."""

    def __init__(self, models: Sequence[LanguageModel], spares: int = 1, name: str = "llm",
                 lanes: tuple[Lane, ...] = (Lane(),)) -> None:
        self.pool = ModelPool(models, spares)
        locks = ResourceLocks()
        self._worker = StepWorker(name, locks, lanes)
        # Background work yields the CPU to replies and to speech synthesis.
        self._background = StepWorker(f"{name}-background", locks,
                                      (Lane((BACKGROUND,), nice=10),))

    def warm_up(self, prefix: Sequence[ChatMessage] = ()) -> None:
        """Pay start-up costs now, and put the prompt prefix every session shares (the system
        prompt) in each instance's cache, so a session's first turn only prefills its words.
        Call before serving requests."""
        for model in self.pool.models:
            model.warm_up()
            if prefix:
                stream = model.warm(prefix)
                while stream.step() is not None:
                    pass

    async def reply(self, request: ReplyRequest) -> AsyncIterator[ReplyEvent]:
        emit = _Emitter()
        model = self.pool.for_session(request.session_id, request.prefix_version)
        job = _ReplyJob(model, request, emit)
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
        return await self._collect(
            _CollectJob(model, lambda m: m.start(messages, params), _Emitter()))

    async def warm(self, session_id: str, messages: tuple[ChatMessage, ...],
                   version: int) -> None:
        model, claim = self.pool.spare()
        await self._collect(_CollectJob(
            model, lambda m: m.warm(messages), _Emitter(),
            on_done=lambda: self.pool.prepared(model, claim, (session_id, version))))

    async def prefill(self, session_id: str, messages: tuple[ChatMessage, ...],
                      version: int) -> None:
        # On the session's own instance, so on the reply worker (normal OS priority): a reply
        # that needs the instance never waits behind a starved low-priority thread.
        model = self.pool.for_session(session_id, version)
        job = _CollectJob(model, lambda m: m.warm(messages), _Emitter())
        await self._collect(job, self._worker)

    async def _collect(self, job: _CollectJob, worker: StepWorker | None = None) -> str:
        worker = worker or self._background
        worker.submit(job)
        try:
            item = await job.emit.queue.get()
        finally:
            job.cancel()
            worker.wake()
        if isinstance(item, BaseException):
            raise item
        return str(item)

    def end_session(self, session_id: str) -> None:
        self.pool.release(session_id)

    def close(self) -> None:
        self._worker.stop()
        self._background.stop()
