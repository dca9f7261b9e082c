"""The language model: a small interface and its llama.cpp adapter (llama-cpp-python).

This is the only module that imports ``llama_cpp``. A ``LanguageModel`` wraps one model
instance with one KV cache. Work on it happens in *steps* so a scheduler can interleave
several generations on a few instances and cancel any of them between two steps:

    stream = model.start(messages, params)     # no compute yet
    while (piece := stream.step()) is not None: # a prompt chunk or one token per call
        ...

Prompt prefill is cut into chunks (``prefill_chunk`` tokens per step), and the longest token
prefix shared with what the instance evaluated last is reused, so a session that keeps its
instance only pays for the new turn.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from shared.errors import EngineError, ModelNotReadyError

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

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop early; the instance keeps what it evaluated (a later prefix hit)."""


class LanguageModel(ABC):
    """One model instance with one KV cache; one generation at a time."""

    name: str = "model"

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


_LOAD_LOCK = threading.Lock()


class LlamaCppModel(LanguageModel):
    """llama-cpp-python adapter: a ``Llama`` instance, its chat template and its KV prefix."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        n_ctx: int = 1024,
        n_threads: int = 2,
        n_batch: int = 64,
        prefill_chunk: int = 16,
        seed: int = 7,
    ) -> None:
        path = Path(model_path) if model_path else default_model_path()
        if not path.is_file():
            raise ModelNotReadyError(f"no GGUF model at {path}; run: parley models build")
        self.name = path.stem
        self._llama = _load_llama(path, n_ctx=n_ctx, n_threads=n_threads, n_batch=n_batch,
                                  seed=seed)
        self._format = _chat_formatter(self._llama)
        self.n_ctx = n_ctx
        self.prefill_chunk = prefill_chunk

    def tokens(self, messages: Sequence[ChatMessage], generation_prompt: bool) -> list[int]:
        text = self._format(messages, generation_prompt)
        return list(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def start(self, messages: Sequence[ChatMessage], params: SamplingParams) -> TokenStream:
        return _LlamaStream(self, self.tokens(messages, True), params)

    def warm(self, messages: Sequence[ChatMessage]) -> TokenStream:
        return _LlamaStream(self, self.tokens(messages, False), None)

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(self.tokens(messages, True))

    @property
    def llama(self) -> Any:
        return self._llama


class _LlamaStream(TokenStream):
    """Chunked prefill of the part of the prompt not cached, then one token per step."""

    def __init__(self, model: LlamaCppModel, prompt: list[int], params: SamplingParams | None):
        if len(prompt) + (params.max_tokens if params else 0) > model.n_ctx:
            raise EngineError(
                f"prompt of {len(prompt)} tokens does not fit the {model.n_ctx}-token context"
            )
        self._model = model
        self._llama = model.llama
        self._prompt = prompt
        self._params = params
        self.prompt_tokens = len(prompt)
        self._pending: list[int] | None = None  # prompt tokens still to prefill
        self._tokens: Any = None  # the llama generator once prefill is done
        self._bytes = b""
        self._done = False

    def step(self) -> str | None:
        if self._done:
            return None
        try:
            return self._step()
        except (RuntimeError, ValueError, OSError) as exc:
            self._done = True
            raise EngineError(f"llama.cpp failed: {exc}") from exc

    def _step(self) -> str | None:
        if self._pending is None:
            self._pending = self._uncached_suffix()
        # Keep the last prompt token for generate(): it refreshes the logits before sampling.
        if len(self._pending) > 1:
            chunk = self._pending[: min(self._model.prefill_chunk, len(self._pending) - 1)]
            self._llama.eval(chunk)
            self._pending = self._pending[len(chunk):]
            return ""
        if self._params is None:  # warm only: evaluate the last token too
            if self._pending:
                self._llama.eval(self._pending)
            self._done = True
            return None
        return self._next_token()

    def _uncached_suffix(self) -> list[int]:
        """Rewind the instance to the longest prefix it shares with the prompt."""
        llama = self._llama
        cached = llama.input_ids[: llama.n_tokens].tolist()
        common = 0
        for a, b in zip(cached, self._prompt, strict=False):
            if a != b:
                break
            common += 1
        common = min(common, len(self._prompt) - 1)
        self.cached_tokens = common
        llama.n_tokens = common  # eval() drops the KV cells past n_tokens itself
        return self._prompt[common:]

    def _next_token(self) -> str | None:
        p = self._params
        assert p is not None
        if self._tokens is None:
            self._tokens = self._llama.generate(
                self._prompt, top_k=p.top_k, top_p=p.top_p, temp=p.temperature,
                repeat_penalty=p.repeat_penalty,
            )
        if self.generated_tokens >= p.max_tokens:
            return self._finish()
        token = next(self._tokens, None)
        if token is None or _is_end_of_generation(self._llama, token):
            return self._finish()
        self.generated_tokens += 1
        self._bytes += self._llama.detokenize([token])
        return self._take_text()

    def _take_text(self) -> str:
        """Decode the complete UTF-8 characters received so far; keep a partial tail."""
        for cut in range(len(self._bytes), max(len(self._bytes) - 4, -1), -1):
            try:
                text = self._bytes[:cut].decode("utf-8")
            except UnicodeDecodeError:
                continue
            self._bytes = self._bytes[cut:]
            return text
        return ""

    def _finish(self) -> str | None:
        self.close()
        return None

    def close(self) -> None:
        self._done = True
        if self._tokens is not None:
            self._tokens.close()
            self._tokens = None


def _is_end_of_generation(llama: Any, token: int) -> bool:
    import llama_cpp

    if token == llama.token_eos():
        return True
    return bool(llama_cpp.llama_vocab_is_eog(llama._model.vocab, token))


def _load_llama(path: Path, *, n_ctx: int, n_threads: int, n_batch: int, seed: int) -> Any:
    try:
        import llama_cpp
        import llama_cpp.llama as llama_module
    except ImportError as exc:
        raise EngineError("llama-cpp-python is missing; pip install 'parley[cloud]'") from exc
    # The weight-repacking "extra buffer types" (AMX / repack) crash with a general protection
    # fault in decode on these VMs; plain mmapped weights work and are shared between instances.
    with _LOAD_LOCK:
        default_params = llama_module.llama_cpp.llama_model_default_params

        def params_without_extra_buffers() -> Any:
            params = default_params()
            params.use_extra_bufts = False
            return params

        llama_module.llama_cpp.llama_model_default_params = params_without_extra_buffers
        try:
            return llama_cpp.Llama(
                str(path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                n_batch=n_batch, n_ubatch=n_batch, seed=seed, verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise EngineError(f"llama.cpp could not load {path.name}: {exc}") from exc
        finally:
            llama_module.llama_cpp.llama_model_default_params = default_params


def _chat_formatter(llama: Any) -> Any:
    """Render messages with the GGUF's own chat template (ChatML when it has none)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llama.metadata.get("tokenizer.chat_template") or _CHATML
    eos = llama.detokenize([llama.token_eos()], special=True).decode("utf-8", "replace")
    bos = llama.detokenize([llama.token_bos()], special=True).decode("utf-8", "replace")
    with_prompt = Jinja2ChatFormatter(template, eos, bos, add_generation_prompt=True)
    without_prompt = Jinja2ChatFormatter(template, eos, bos, add_generation_prompt=False)

    def render(messages: Sequence[ChatMessage], generation_prompt: bool) -> str:
        formatter = with_prompt if generation_prompt else without_prompt
        payload = [{"role": m.role, "content": m.content} for m in messages]
        return str(formatter(messages=payload).prompt)

    return render


_CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


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
