"""The language model as the cloud sees it: small interfaces, no model runtime.

A ``LanguageModel`` is one model instance with one KV cache (or one sequence of a shared cache).
Work on it happens in *steps* so a scheduler can interleave several generations and cancel any
of them between two steps:

    stream = model.start(messages, params)     # no compute yet
    while (piece := stream.step()) is not None: # a prompt chunk or one token per call
        ...

Instances whose ``group`` is the same ``ModelGroup`` share one compute context: the group
advances the streams of several of them *together*, in one step (one batch), which costs
much less than stepping them one by one. The llama.cpp adapter is ``cloud.engines.llama``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from shared.errors import EngineError

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a chat prompt."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How to sample a reply. Spoken replies are short: ``max_tokens`` is a hard cap."""

    max_tokens: int = 64
    temperature: float = 0.3
    top_k: int = 40
    top_p: float = 0.9
    repeat_penalty: float = 1.1


class TokenStream(ABC):
    """One generation in progress on one model instance. Not thread-safe: one caller."""

    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens found in the instance's cache (not recomputed)
    generated_tokens: int = 0

    @abstractmethod
    def step(self) -> str | None:
        """Do one unit of work; return new text ('' while prefilling), ``None`` when done."""

    @property
    def prompt_left(self) -> int:
        """Prompt tokens still to evaluate (0 once generating): how costly the next steps
        are. Before the first step, an estimate from what the instance's cache holds."""
        return 0

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop early; the instance keeps what it evaluated (a later prefix hit)."""


StepResult = str | None | EngineError


class ModelGroup(ABC):
    """Model instances sharing one compute context, whose streams can step together."""

    @abstractmethod
    def step_together(self, streams: Sequence[TokenStream], max_tokens: int) -> list[StepResult]:
        """Advance each stream (of this group's instances, at most one per instance) by one
        step, all in one batch: each generating stream adds its next token; prompt chunks are
        cut so they hold at most ``max_tokens`` tokens together, earlier streams first (a
        stream left without room makes no progress: '').
        Returns, per stream, what its own ``step`` would have: text, '' or None — or the
        ``EngineError`` that ended it."""

    def use_threads(self, threads: int | None) -> None:  # noqa: B027 - optional hook
        """Compute the next steps with ``threads`` threads (None: as configured)."""


class LanguageModel(ABC):
    """One model instance with one KV cache; one generation at a time."""

    name: str = "model"
    group: ModelGroup | None = None  # set when instances can step together

    @abstractmethod
    def start(self, messages: Sequence[ChatMessage], params: SamplingParams) -> TokenStream:
        """A stream answering ``messages`` (a generation prompt is added); lazy, no compute."""

    @abstractmethod
    def warm(self, messages: Sequence[ChatMessage]) -> TokenStream:
        """A stream that only prefills ``messages`` (no generation prompt) into the cache."""

    @abstractmethod
    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Prompt length of ``messages`` in tokens (with a generation prompt)."""

    def warm_up(self) -> None:
        """Run a tiny generation so the first real request pays no start-up cost."""
        stream = self.start([ChatMessage("user", "Hi")], SamplingParams(max_tokens=2))
        while stream.step() is not None:
            pass


def default_model_path() -> Path:
    """The default GGUF from the model registry (``ModelNotReadyError`` says how to build)."""
    from models import registry

    return registry.model_file(registry.default_spec("llm").name)


@dataclass(frozen=True, slots=True)
class ChatResult:
    """A whole reply with its timings (for ``parley llm chat``)."""

    text: str
    prompt_tokens: int
    ttft_ms: float
    tokens_per_s: float


def chat_once(model: LanguageModel, messages: Sequence[ChatMessage],
              params: SamplingParams) -> ChatResult:
    """Generate a whole reply synchronously, timing the first token and the token rate."""
    start = time.perf_counter()
    stream = model.start(messages, params)
    first: float | None = None
    pieces: list[str] = []
    while (piece := stream.step()) is not None:
        if piece and first is None:
            first = time.perf_counter()
        pieces.append(piece)
    end = time.perf_counter()
    first = first or end
    n = stream.generated_tokens
    rate = (n - 1) / (end - first) if n > 1 and end > first else 0.0
    return ChatResult(text="".join(pieces).strip(), prompt_tokens=stream.prompt_tokens,
                      ttft_ms=(first - start) * 1000.0, tokens_per_s=rate)
