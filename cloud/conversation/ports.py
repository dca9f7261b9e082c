"""What the conversation needs from the model services, as small interfaces.

The gateway implements them over Ray Serve handles (``cloud/serve``); tests and the in-process
tier implement them with ``cloud.engines.reply.ReplyService`` / ``SpeechService`` directly.
Everything that crosses a process boundary here is a small frozen dataclass: a reply streams
clauses, never single tokens.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from cloud.conversation.clauses import ClausePolicy
from cloud.engines.llm import ChatMessage


@dataclass(frozen=True, slots=True)
class ReplyRequest:
    """Generate the reply to ``messages`` for one turn of one session."""

    session_id: str
    turn_id: int
    messages: tuple[ChatMessage, ...]
    max_tokens: int = 48
    prefix_version: int = 0  # how many times the session's context was folded
    clauses: ClausePolicy = field(default_factory=ClausePolicy)


@dataclass(frozen=True, slots=True)
class Clause:
    """A speakable piece of the reply, in order."""

    index: int
    text: str
    at_ms: float  # since the request reached the model service


@dataclass(frozen=True, slots=True)
class ReplyDone:
    """The reply is complete (the last item of a reply stream)."""

    prompt_tokens: int
    cached_tokens: int
    generated_tokens: int
    ttft_ms: float  # request received -> first token, in the model service
    queue_ms: float  # request received -> first step run (waiting for the model)
    finish: str  # "stop" | "length" | "sentences"
    raw_text: str = ""  # the clauses as the model wrote them (for the next prompt)


ReplyEvent = Clause | ReplyDone


@dataclass(frozen=True, slots=True)
class SpeechRequest:
    """Speak one clause; ``first`` clauses of a turn jump the synthesis queue."""

    session_id: str
    turn_id: int
    text: str
    speed: float = 1.0
    sample_rate: int = 16000
    first: bool = False


@dataclass(frozen=True, slots=True)
class SpeechAudio:
    """One clause of PCM16 mono audio at the requested rate."""

    pcm16: bytes
    sample_rate: int
    synth_ms: float
    queue_ms: float

    @property
    def samples(self) -> int:
        return len(self.pcm16) // 2


class ReplySource(ABC):
    """The language model service, as the conversation sees it."""

    @abstractmethod
    def reply(self, request: ReplyRequest) -> AsyncIterator[ReplyEvent]:
        """Stream the clauses of the reply, then a ``ReplyDone``. Closing the iterator
        cancels the generation."""

    @abstractmethod
    async def summarize(self, session_id: str, messages: tuple[ChatMessage, ...],
                        max_tokens: int) -> str:
        """Background, low priority: a short summary (for context folding)."""

    @abstractmethod
    async def warm(self, session_id: str, messages: tuple[ChatMessage, ...],
                   version: int) -> None:
        """Background, low priority: prefill ``messages`` (the session's prefix after a fold)
        into a spare model cache; the session's first reply with ``prefix_version == version``
        then uses it, so the fold costs the critical path nothing."""


    @abstractmethod
    async def prefill(self, session_id: str, messages: tuple[ChatMessage, ...],
                      version: int) -> None:
        """Background, low priority: evaluate ``messages`` into the session's own model cache
        (the user's words so far, from a partial transcript), so the final prompt that
        extends them starts from there. Cancelling keeps what was evaluated."""


class SpeechSource(ABC):
    """The speech synthesis service, as the conversation sees it."""

    @abstractmethod
    async def speak(self, request: SpeechRequest) -> SpeechAudio:
        """Synthesize one clause; cancelling the call stops the synthesis."""


class ContextStore(ABC):
    """Where session state survives a gateway replica restart."""

    @abstractmethod
    async def save(self, session_id: str, state: dict[str, Any]) -> None:
        """Replace the stored state of a session."""

    @abstractmethod
    async def load(self, session_id: str) -> dict[str, Any] | None:
        """The stored state, or None."""

    @abstractmethod
    async def forget(self, session_id: str) -> None:
        """Drop a session's state."""


class MemoryContextStore(ContextStore):
    """A process-local store (tests, and a tier without Ray)."""

    def __init__(self) -> None:
        self._states: dict[str, dict[str, Any]] = {}

    async def save(self, session_id: str, state: dict[str, Any]) -> None:
        self._states[session_id] = state

    async def load(self, session_id: str) -> dict[str, Any] | None:
        return self._states.get(session_id)

    async def forget(self, session_id: str) -> None:
        self._states.pop(session_id, None)
