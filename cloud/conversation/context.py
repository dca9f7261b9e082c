"""The conversation's context: what the model sees each turn, held within a budget.

The prompt is ``system (+ summary of older turns)`` followed by the recent exchanges verbatim and
the new user turn. It only grows by appending between two *folds*, so the model instance that
serves the session reuses its cached prefix every turn. When ``fold_after`` complete exchanges
are held, the oldest ones (all but ``keep_recent``) are folded into the summary: the summary is
written by the model in the background (``plan_fold`` -> summarize -> ``apply_fold``), and the
new prefix is warmed into the cache before the next turn needs it. If a fold is late, the prompt
still never exceeds ``max_prompt_tokens``: the oldest exchanges are left out of it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from cloud.engines.llm import ChatMessage

DEFAULT_SYSTEM_PROMPT = (
    "You are Parley, a friendly voice assistant. You are speaking out loud: answer in one or "
    "two short, plain sentences, with no lists, markdown or emoji."
)


@dataclass(frozen=True, slots=True)
class ContextPolicy:
    """The context budget."""

    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    keep_recent: int = 3
    fold_after: int = 4
    max_prompt_tokens: int = 600
    summary_max_tokens: int = 48


@dataclass(slots=True)
class Exchange:
    """One user turn and the assistant's reply to it (as far as the user heard it)."""

    turn_id: int
    user: str
    assistant: str = ""
    complete: bool = False


@dataclass(frozen=True, slots=True)
class FoldRequest:
    """Exchanges to fold into the summary; ``turn_ids`` identifies them when applying."""

    turn_ids: tuple[int, ...]
    messages: tuple[ChatMessage, ...]  # the summarization prompt


def estimate_tokens(messages: list[ChatMessage]) -> int:
    """A tokenizer-free estimate (about 3.6 characters a token plus the template's tokens)."""
    return sum(math.ceil(len(m.content) / 3.6) + 5 for m in messages) + 3


@dataclass
class ConversationContext:
    """Summary + recent exchanges of one session."""

    policy: ContextPolicy = field(default_factory=ContextPolicy)
    summary: str = ""
    exchanges: list[Exchange] = field(default_factory=list)
    version: int = 0  # incremented by every fold (the prefix changes)
    _pending_fold: tuple[int, ...] = ()

    # ---- the prompt --------------------------------------------------------------------

    def system_message(self) -> ChatMessage:
        text = self.policy.system_prompt
        if self.summary:
            text += f"\nEarlier in this conversation: {self.summary}"
        return ChatMessage("system", text)

    def prefix(self) -> list[ChatMessage]:
        """Everything before the next user turn: what a warm cache should hold."""
        messages = [self.system_message()]
        for ex in self.exchanges:
            if not ex.complete:
                break
            messages.append(ChatMessage("user", ex.user))
            messages.append(ChatMessage("assistant", ex.assistant or "..."))
        return messages

    def prompt(self) -> list[ChatMessage]:
        """The prompt for the open (last, incomplete) exchange, within the token budget."""
        if not self.exchanges or self.exchanges[-1].complete:
            raise ValueError("no open turn to prompt for")
        history = self.prefix()
        current = ChatMessage("user", self.exchanges[-1].user)
        while len(history) > 1 and estimate_tokens([*history, current]) > \
                self.policy.max_prompt_tokens:
            del history[1:3]  # leave the oldest exchange out (it is being folded)
        return [*history, current]

    # ---- turns -------------------------------------------------------------------------

    def begin_turn(self, turn_id: int, user_text: str) -> None:
        """Open an exchange; a turn id already open or last is replaced (a later final)."""
        if self.exchanges and self.exchanges[-1].turn_id == turn_id:
            self.exchanges.pop()
        self.exchanges.append(Exchange(turn_id=turn_id, user=user_text))

    def finish_turn(self, turn_id: int, reply: str) -> None:
        """The reply to ``turn_id`` as spoken; the exchange becomes part of the prefix."""
        ex = self._find(turn_id)
        if ex is not None:
            ex.assistant = reply.strip()
            ex.complete = True

    def truncate_reply(self, turn_id: int, heard: str) -> bool:
        """Keep only the words of the reply the user heard; False when the turn is unknown."""
        ex = self._find(turn_id)
        if ex is None:
            return False
        ex.assistant = heard.strip()
        ex.complete = True
        return True

    def drop_turn(self, turn_id: int) -> None:
        """Forget a cancelled turn entirely (the user is still speaking it)."""
        self.exchanges = [ex for ex in self.exchanges if ex.turn_id != turn_id]

    def _find(self, turn_id: int) -> Exchange | None:
        return next((ex for ex in reversed(self.exchanges) if ex.turn_id == turn_id), None)

    # ---- folding -----------------------------------------------------------------------

    def plan_fold(self) -> FoldRequest | None:
        """A fold to run in the background when one is due and none is pending."""
        complete = [ex for ex in self.exchanges if ex.complete]
        if self._pending_fold or len(complete) < self.policy.fold_after:
            return None
        folded = self.exchanges[: max(0, len(complete) - self.policy.keep_recent)]
        if not folded or not all(ex.complete for ex in folded):
            return None
        self._pending_fold = tuple(ex.turn_id for ex in folded)
        return FoldRequest(turn_ids=self._pending_fold, messages=self._summary_prompt(folded))

    def folded_prefix(self, request: FoldRequest, summary: str) -> list[ChatMessage] | None:
        """The prefix as it will be once the fold is applied (None if it no longer applies)."""
        n = len(request.turn_ids)
        if tuple(ex.turn_id for ex in self.exchanges[:n]) != request.turn_ids or \
                not summary.strip():
            return None
        after = ConversationContext(policy=self.policy, summary=summary.strip(),
                                    exchanges=self.exchanges[n:])
        return after.prefix()

    def apply_fold(self, request: FoldRequest, summary: str) -> bool:
        """Replace the folded exchanges by the new summary; False if the history moved on."""
        self._pending_fold = ()
        if self.folded_prefix(request, summary) is None:
            return False
        self.summary = summary.strip()
        del self.exchanges[: len(request.turn_ids)]
        self.version += 1
        return True

    def abandon_fold(self) -> None:
        """A fold failed: allow another to be planned."""
        self._pending_fold = ()

    def _summary_prompt(self, folded: list[Exchange]) -> tuple[ChatMessage, ...]:
        lines = [f"Earlier summary: {self.summary}"] if self.summary else []
        for ex in folded:
            lines += [f"User: {ex.user}", f"Assistant: {ex.assistant}"]
        task = ("Summarize this conversation in one or two sentences. Keep names, numbers and "
                "facts the user gave.\n\n" + "\n".join(lines))
        return (ChatMessage("system", "You write very short, factual summaries."),
                ChatMessage("user", task))

    # ---- persistence -------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able copy (for the session store)."""
        return {"summary": self.summary, "version": self.version,
                "exchanges": [asdict(ex) for ex in self.exchanges]}

    @classmethod
    def restore(cls, data: dict[str, Any], policy: ContextPolicy) -> ConversationContext:
        exchanges = [Exchange(**ex) for ex in data.get("exchanges", [])]
        return cls(policy=policy, summary=str(data.get("summary", "")), exchanges=exchanges,
                   version=int(data.get("version", 0)))
