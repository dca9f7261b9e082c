"""One session's conversation: what each edge message does to the turns and the context.

* ``transcript.final`` starts a turn (a running turn is stopped first; a later final with the
  same turn id replaces the earlier one: the user was not done).
* ``barge_in`` stops the turn and keeps, as the assistant's side of the context, only the words
  the edge reports as heard (or, without them, the share of the audio it played).
* ``cancel`` stops the turn and forgets it: the user is still speaking it, a final will follow.
* ``transcript.partial`` (while no reply runs) evaluates the user's words so far into the
  model's cache in the background, so the final's prompt only prefills what changed.
* Anything an edge should not send gets a non-fatal ``error`` reply; the session goes on.

After each turn the context is saved (``ContextStore``) and, when due, older exchanges are
folded into a summary in the background and the new prefix is warmed into the model's cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cloud.conversation.clauses import ClausePolicy
from cloud.conversation.context import ContextPolicy, ConversationContext, FoldRequest
from cloud.conversation.ports import ContextStore, ReplySource, SpeechSource
from cloud.conversation.prosody import ProsodyPolicy, reply_style
from cloud.conversation.turn import Send, TurnPlan, TurnRecord, heard_text, run_turn
from cloud.engines.llm import ChatMessage
from shared.errors import ParleyError
from shared.protocol import (
    BargeIn,
    Cancel,
    Error,
    Message,
    Metrics,
    TranscriptFinal,
    TranscriptPartial,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConversationSettings:
    """Policies of a conversation (all pure data)."""

    context: ContextPolicy = field(default_factory=ContextPolicy)
    prosody: ProsodyPolicy = field(default_factory=ProsodyPolicy)
    clauses: ClausePolicy = field(default_factory=ClausePolicy)
    chunk_ms: int = 80
    reply_mode: str = "stream"  # or "naive": see TurnPlan


@dataclass
class _ActiveTurn:
    turn_id: int
    task: asyncio.Task[None]
    record: TurnRecord


class Conversation:
    """Turns, barge-in and context of one session; ``handle`` each message from the edge."""

    def __init__(self, session_id: str, replies: ReplySource, speech: SpeechSource, send: Send,
                 *, settings: ConversationSettings | None = None, sample_rate: int = 16000,
                 store: ContextStore | None = None, context: ConversationContext | None = None,
                 on_turn: Callable[[TurnRecord], None] | None = None,
                 on_error: Callable[[str], None] | None = None,
                 extras: Callable[[], dict[str, Any]] | None = None) -> None:
        self.session_id = session_id
        self.settings = settings or ConversationSettings()
        self.context = context or ConversationContext(self.settings.context)
        self.sample_rate = sample_rate
        self._replies = replies
        self._speech = speech
        self._send = send
        self._store = store
        self._on_turn = on_turn
        self._on_error = on_error or (lambda _code: None)
        self._extras = extras or dict
        self._active: _ActiveTurn | None = None
        self._last: TurnRecord | None = None
        self._ready_fold: tuple[FoldRequest, str] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._prefill: asyncio.Task[None] | None = None

    # ---- messages from the edge --------------------------------------------------------

    async def handle(self, msg: Message) -> None:
        """React to one message from the edge (never raises for bad input: replies error)."""
        if isinstance(msg, TranscriptFinal):
            await self._on_final(msg)
        elif isinstance(msg, BargeIn):
            await self._on_barge_in(msg)
        elif isinstance(msg, Cancel):
            await self._on_cancel(msg)
        elif isinstance(msg, TranscriptPartial):
            self._on_partial(msg)
        elif isinstance(msg, Metrics | Error):
            return  # informative only
        else:
            await self._error("unexpected_message", f"the cloud does not accept {msg.TYPE}")

    def _on_partial(self, partial: TranscriptPartial) -> None:
        """While the user speaks, evaluate their words so far into the model's cache."""
        text = partial.text.strip()
        if self._active is not None or not text:
            return
        self._stop_prefill()
        messages = (*self.context.prefix(), ChatMessage("user", text))
        self._prefill = self._spawn(self._prefill_quietly(messages, self.context.version))

    def _stop_prefill(self) -> None:
        if self._prefill is not None and not self._prefill.done():
            self._prefill.cancel()  # what it evaluated stays cached
        self._prefill = None

    async def _on_final(self, final: TranscriptFinal) -> None:
        self._stop_prefill()
        text = final.text.strip()
        if not text:
            await self._error("empty_transcript", f"turn {final.turn_id} has no words")
            return
        await self._stop_active(replaced_by=final.turn_id)
        style = reply_style(text, final.prosody, self.settings.prosody)
        self.context.begin_turn(final.turn_id, style.user_text)
        plan = TurnPlan(
            session_id=self.session_id, turn_id=final.turn_id,
            messages=tuple(self.context.prompt()), max_tokens=style.max_tokens,
            prefix_version=self.context.version,
            clauses=dataclasses.replace(self.settings.clauses,
                                        max_sentences=style.max_sentences),
            tts_speed=style.tts_speed, sample_rate=self.sample_rate,
            chunk_ms=self.settings.chunk_ms, reply_mode=self.settings.reply_mode,
        )
        record = TurnRecord(turn_id=final.turn_id, started=time.monotonic())
        task = asyncio.create_task(self._run(plan, record))
        self._active = _ActiveTurn(final.turn_id, task, record)

    async def _on_barge_in(self, msg: BargeIn) -> None:
        record = await self._stop_turn(msg.turn_id)
        if record is None and self._last is not None and self._last.turn_id == msg.turn_id:
            record = self._last
        if record is None:
            await self._error("unknown_turn", f"no reply to turn {msg.turn_id} to interrupt")
            return
        heard = msg.heard_text.strip() or heard_text(record, msg.samples_played)
        self.context.truncate_reply(msg.turn_id, heard)
        await self.persist()

    async def _on_cancel(self, msg: Cancel) -> None:
        await self._stop_turn(msg.turn_id)
        self.context.drop_turn(msg.turn_id)
        await self.persist()

    # ---- turns -------------------------------------------------------------------------

    async def _run(self, plan: TurnPlan, record: TurnRecord) -> None:
        try:
            await run_turn(plan, self._replies, self._speech, self._send, record)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failed turn must not end the session
            log.warning("turn %d failed: %s", plan.turn_id, exc)
            self.context.finish_turn(plan.turn_id, record.reply_text)
            await self._error("turn_failed", _one_line(exc))
        else:
            self.context.finish_turn(plan.turn_id, record.reply_text)
            if self._on_turn is not None:
                self._on_turn(record)
        self._last = record
        if self._active is not None and self._active.record is record:
            self._active = None
        await self.persist()
        self._after_turn()

    async def _stop_turn(self, turn_id: int) -> TurnRecord | None:
        """Stop the running turn if it is ``turn_id``; its record, or None."""
        active = self._active
        if active is None or active.turn_id != turn_id:
            return None
        await self._cancel_active()
        return active.record

    async def _stop_active(self, replaced_by: int) -> None:
        """Stop whatever turn runs before a new final; keep what was said of another turn."""
        active = self._active
        if active is None:
            return
        await self._cancel_active()
        if active.turn_id != replaced_by:
            self.context.finish_turn(active.turn_id, active.record.reply_text)
        self._last = active.record

    async def _cancel_active(self) -> None:
        active, self._active = self._active, None
        if active is None:
            return
        active.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await active.task

    # ---- background: folding and warming -----------------------------------------------

    def _after_turn(self) -> None:
        self._apply_ready_fold()
        request = self.context.plan_fold()
        if request is not None:
            self._spawn(self._fold(request))

    async def _fold(self, request: FoldRequest) -> None:
        """Summarize, prepare the new prefix in a spare model cache, then switch to it."""
        try:
            summary = await self._replies.summarize(
                self.session_id, request.messages, self.settings.context.summary_max_tokens)
            prefix = self.context.folded_prefix(request, summary)
            if prefix is None:
                self.context.abandon_fold()
                return
            await self._replies.warm(self.session_id, tuple(prefix), self.context.version + 1)
        except Exception as exc:  # background work: the conversation goes on unfolded
            log.warning("context fold failed: %s", exc)
            self.context.abandon_fold()
            return
        self._ready_fold = (request, summary)
        if self._active is None:
            self._apply_ready_fold()

    def _apply_ready_fold(self) -> None:
        if self._ready_fold is None:
            return
        request, summary = self._ready_fold
        self._ready_fold = None
        if self.context.apply_fold(request, summary):
            self._spawn(self.persist())

    async def _prefill_quietly(self, messages: tuple[ChatMessage, ...], version: int) -> None:
        try:
            await self._replies.prefill(self.session_id, messages, version)
        except Exception as exc:  # best effort: the final prompt just prefills more
            log.debug("prefill failed: %s", exc)

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # ---- state -------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._active is not None

    async def persist(self) -> None:
        """Save the context (and the caller's extras) where a new replica finds it."""
        if self._store is None:
            return
        state = {"context": self.context.snapshot(), **self._extras()}
        try:
            await self._store.save(self.session_id, state)
        except Exception as exc:
            log.warning("saving session %s failed: %s", self.session_id, exc)

    async def settle(self, timeout_s: float = 10.0) -> None:
        """Wait (at most ``timeout_s``) until the background work (folds) has finished."""
        pending = [t for t in self._background if t is not self._prefill]
        if pending:
            await asyncio.wait(pending, timeout=timeout_s)

    async def close(self) -> None:
        """Stop the running turn and the background work (the context stays saved)."""
        await self._cancel_active()
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _error(self, code: str, message: str) -> None:
        self._on_error(code)
        with contextlib.suppress(ParleyError):
            await self._send(Error(code=code, message=message[:1024], fatal=False))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
