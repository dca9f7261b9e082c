"""Fakes of the cloud's engines (subclasses of the real interfaces) and shared fixtures."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pytest

from cloud.engines.llm import ChatMessage, LanguageModel, SamplingParams, TokenStream
from cloud.engines.tts import ShouldContinue, SpeechSynthesizer
from shared.audio import Samples

Script = Callable[[Sequence[ChatMessage]], str]


def echo_script(messages: Sequence[ChatMessage]) -> str:
    """Answer every turn with two sentences that quote the user's last words (and summaries
    with one short sentence)."""
    if messages[0].content.startswith("You write very short"):
        return "The user is planning a trip and asked several questions."
    return f"You said {messages[-1].content.rstrip('?.!')}, right? That is a fine thing to say."


class FakeStream(TokenStream):
    def __init__(self, model: FakeLanguageModel, text: str, max_tokens: int | None,
                 prompt_tokens: int) -> None:
        self._model = model
        self._words = [w + " " for w in text.split()]
        self._max = max_tokens
        self.prompt_tokens = prompt_tokens
        self._prefilled = False
        self.closed = False

    def step(self) -> str | None:
        if self.closed:
            return None
        time.sleep(self._model.step_s)
        if not self._prefilled:
            self._prefilled = True
            return ""
        if not self._words or (self._max is not None and self.generated_tokens >= self._max):
            self.closed = True
            return None
        self.generated_tokens += 1
        self._model.tokens_generated += 1
        return self._words.pop(0)

    def close(self) -> None:
        self.closed = True


class FakeLanguageModel(LanguageModel):
    """Words of a scripted reply, one per step, ``step_s`` seconds each."""

    def __init__(self, script: Script = echo_script, step_s: float = 0.002) -> None:
        self.script = script
        self.step_s = step_s
        self.prompts: list[list[ChatMessage]] = []
        self.warmed: list[list[ChatMessage]] = []
        self.tokens_generated = 0

    def start(self, messages: Sequence[ChatMessage], params: SamplingParams) -> TokenStream:
        self.prompts.append(list(messages))
        return FakeStream(self, self.script(messages), params.max_tokens,
                          self.count_tokens(messages))

    def warm(self, messages: Sequence[ChatMessage]) -> TokenStream:
        self.warmed.append(list(messages))
        return FakeStream(self, "", None, self.count_tokens(messages))

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return sum(len(m.content.split()) + 4 for m in messages)


class FakeSynthesizer(SpeechSynthesizer):
    """A 440 Hz tone, 0.25 s a word, at 22.05 kHz; ``sentence_s`` of compute per sentence."""

    def __init__(self, sentence_s: float = 0.005) -> None:
        self.sentence_s = sentence_s
        self.texts: list[str] = []
        self.stopped = 0

    @property
    def sample_rate(self) -> int:
        return 22050

    def stream(self, text: str, speed: float = 1.0,
               should_continue: ShouldContinue | None = None) -> Iterator[Samples]:
        self.texts.append(text)
        for sentence in text.replace("?", ".").split("."):
            if not sentence.strip():
                continue
            if should_continue is not None and not should_continue():
                self.stopped += 1
                return
            time.sleep(self.sentence_s)
            n = int(0.25 * len(sentence.split()) * self.sample_rate / speed)
            t = np.arange(n, dtype=np.float32) / self.sample_rate
            yield (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.fixture
def fake_llm() -> FakeLanguageModel:
    return FakeLanguageModel()


@pytest.fixture
def fake_tts() -> FakeSynthesizer:
    return FakeSynthesizer()


@pytest.fixture
def fakes() -> tuple[type[FakeLanguageModel], type[FakeSynthesizer]]:
    """The fake classes, for tests that build their own."""
    return FakeLanguageModel, FakeSynthesizer


@pytest.fixture(scope="session")
def cloud_models() -> None:
    """Fail (not skip) when the cloud's default LLM or voice is not built."""
    from models import registry

    missing = [s.name for s in (registry.default_spec("llm"), registry.default_spec("tts"))
               if not registry.status(s).ready]
    if missing:
        pytest.fail(f"models not built: {missing}; run: parley models build")
