"""The llama.cpp adapter (llama-cpp-python): one model, one context, several sequences.

This is the only module that imports ``llama_cpp``. A ``LlamaEngine`` loads a GGUF once and
makes one llama.cpp context whose KV cache holds ``sequences`` separate token ranges of
``n_ctx`` tokens (one llama.cpp sequence id each). Each range is a ``LlamaSequence``, a
``LanguageModel`` that remembers which tokens it holds: a prompt extending them (the session's
next turn) only evaluates what is new. ``step_together`` advances the streams of several
sequences in one ``llama_decode``: the weights are read once per call, so a batch of a few
tokens costs much less than the same tokens in separate calls.

All calls on one engine must come from one thread at a time (the reply service's worker).
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cloud.engines.llm import (
    ChatMessage,
    LanguageModel,
    ModelGroup,
    SamplingParams,
    StepResult,
    TokenStream,
    default_model_path,
)
from shared.errors import EngineError, ModelNotReadyError

log = logging.getLogger(__name__)

_LOAD_LOCK = threading.Lock()
_backend_ready = False
# llama.cpp is built with OpenMP here. Its threads spin (GOMP default: 300000 rounds) at every
# barrier and between calls: when a step uses two threads and the other core turns busy, a
# spinning thread holds the core its partner needs (steps took 4x longer). Spinning briefly
# then sleeping keeps two-thread steps fast on an idle core and bounded on a busy one. Read by
# libgomp when it loads, so it is set before llama_cpp is first imported.
GOMP_SPINCOUNT = "2000"
PENALTY_LAST_N = 64
MIN_P = 0.05
PIECE_BYTES = 64  # the text of nearly every token fits; a longer one is asked for again


class LlamaEngine(ModelGroup):
    """A GGUF in one llama.cpp context with ``sequences`` independent KV ranges."""

    def __init__(self, model_path: str | Path | None = None, *, sequences: int = 1,
                 n_ctx: int = 1024, n_threads: int = 1, n_batch: int = 128,
                 seed: int = 7) -> None:
        path = Path(model_path) if model_path else default_model_path()
        if not path.is_file():
            raise ModelNotReadyError(f"no GGUF model at {path}; run: parley models build")
        if sequences < 1:
            raise ValueError("an engine needs at least one sequence")
        self._c = _llama_cpp()
        self.name = path.stem
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        self.seed = seed
        self.n_threads = self._threads = n_threads
        self._model, self._context = _load(path, sequences, n_ctx, n_threads, n_batch)
        self._memory = self._c.llama_get_memory(self._context.ctx)
        self._batch = self._c.llama_batch_init(n_batch, 0, 1)
        self._format = _chat_formatter(self._model)
        self._pieces: dict[int, bytes] = {}
        self._ends: dict[int, bool] = {}
        self.models = [LlamaSequence(self, seq_id) for seq_id in range(sequences)]

    # ---- text <-> tokens ------------------------------------------------------------------

    def prompt(self, messages: Sequence[ChatMessage], generation_prompt: bool) -> list[int]:
        text = self._format(messages, generation_prompt)
        data = text.encode("utf-8")
        try:
            return list(self._model.tokenize(data, False, True))
        except RuntimeError as exc:  # its message quotes the whole prompt
            raise EngineError(f"llama.cpp could not tokenize a {len(data)}-byte prompt") from exc

    # Token facts are cached: each call into llama.cpp releases the GIL, and getting it back
    # can take a switch interval when the replica's event loop is busy.

    def piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self._token_to_piece(token, PIECE_BYTES)
        return piece

    def _token_to_piece(self, token: int, size: int) -> bytes:
        buffer = ctypes.create_string_buffer(size)
        n = self._c.llama_token_to_piece(self._model.vocab, token, buffer, size, 0, False)
        if n < 0:  # the buffer was too small: -n bytes are needed
            size = -n
            buffer = ctypes.create_string_buffer(size)
            n = self._c.llama_token_to_piece(self._model.vocab, token, buffer, size, 0, False)
        return buffer.raw[: max(0, n)]

    def ends_generation(self, token: int) -> bool:
        ends = self._ends.get(token)
        if ends is None:
            ends = self._ends[token] = bool(self._c.llama_vocab_is_eog(self._model.vocab, token))
        return ends

    # ---- compute ------------------------------------------------------------------------

    def step_together(self, streams: Sequence[TokenStream], max_tokens: int) -> list[StepResult]:
        results: list[StepResult] = [None] * len(streams)
        prompt_room = max(1, max_tokens)
        used = 0
        planned: list[tuple[int, _SequenceStream, list[int], bool]] = []
        for i, stream in enumerate(streams):
            if not isinstance(stream, _SequenceStream) or stream.sequence.group is not self:
                raise TypeError("a stream of another model cannot join this engine's batch")
            generating = stream.prompt_left == 0  # one token: always fits the prompt budget
            room = self.n_batch - used if generating else min(prompt_room, self.n_batch - used)
            try:
                planned_input = stream.next_input(room)
            except EngineError as exc:
                results[i] = exc
                continue
            if planned_input is None:
                continue  # finished without compute
            tokens, wants_logits = planned_input
            results[i] = ""
            if tokens:
                planned.append((i, stream, tokens, wants_logits))
                used += len(tokens)
                prompt_room -= 0 if generating else len(tokens)
        if planned:
            self._run(planned, results)
        return results

    def _run(self, planned: list[tuple[int, _SequenceStream, list[int], bool]],
             results: list[StepResult]) -> None:
        outputs = self._fill_batch([(s, tokens, logits) for _, s, tokens, logits in planned])
        code = self._c.llama_decode(self._context.ctx, self._batch)
        if code != 0:
            error = EngineError(f"llama.cpp decode failed (code {code})")
            for i, stream, _, _ in planned:
                stream.sequence.forget()
                stream.close()
                results[i] = error
            return
        for (i, stream, tokens, _), output in zip(planned, outputs, strict=True):
            try:
                results[i] = stream.evaluated(len(tokens), output)
            except EngineError as exc:
                results[i] = exc

    def _fill_batch(self, inputs: list[tuple[_SequenceStream, list[int], bool]],
                    ) -> list[int | None]:
        """Put the inputs in the batch; the batch index of each input's logits (or None)."""
        batch = self._batch
        n = 0
        outputs: list[int | None] = []
        for stream, tokens, wants_logits in inputs:
            start = len(stream.sequence.tokens)
            for offset, token in enumerate(tokens):
                batch.token[n] = token
                batch.pos[n] = start + offset
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = stream.sequence.seq_id
                batch.logits[n] = 0
                n += 1
            batch.logits[n - 1] = 1 if wants_logits else 0
            outputs.append(n - 1 if wants_logits else None)
        batch.n_tokens = n
        return outputs

    def use_threads(self, threads: int | None) -> None:
        threads = threads or self.n_threads
        if threads != self._threads:
            self._c.llama_set_n_threads(self._context.ctx, threads, threads)
            self._threads = threads

    def sample(self, sampler: Any, output: int) -> int:
        return int(self._c.llama_sampler_sample(sampler, self._context.ctx, output))

    def new_sampler(self, params: SamplingParams) -> Any:
        """A llama.cpp sampler chain for ``params`` (free it with ``free_sampler``)."""
        c = self._c
        chain = c.llama_sampler_chain_init(c.llama_sampler_chain_default_params())
        stages = [c.llama_sampler_init_top_k(params.top_k),
                  c.llama_sampler_init_penalties(self._model.n_vocab(), PENALTY_LAST_N,
                                                 params.repeat_penalty, 0.0, 0.0)]
        if params.temperature <= 0:
            stages.append(c.llama_sampler_init_greedy())
        else:
            stages += [c.llama_sampler_init_top_p(params.top_p, 1),
                       c.llama_sampler_init_min_p(MIN_P, 1),
                       c.llama_sampler_init_temp(params.temperature),
                       c.llama_sampler_init_dist(self.seed)]
        for stage in stages:
            c.llama_sampler_chain_add(chain, stage)
        return chain

    def free_sampler(self, sampler: Any) -> None:
        self._c.llama_sampler_free(sampler)

    def drop_after(self, seq_id: int, position: int) -> None:
        """Drop the KV cells of sequence ``seq_id`` from ``position`` on."""
        self._c.llama_memory_seq_rm(self._memory, seq_id, position, -1)

    def close(self) -> None:
        if self._batch is not None:
            self._c.llama_batch_free(self._batch)
            self._batch = None
        self._context.close()
        self._model.close()


class LlamaSequence(LanguageModel):
    """One KV range of a ``LlamaEngine``: a model instance with its own cached prefix."""

    def __init__(self, engine: LlamaEngine, seq_id: int) -> None:
        self.engine = engine
        self.group = engine
        self.seq_id = seq_id
        self.name = engine.name
        self.tokens: list[int] = []  # what the range holds, position by position

    def start(self, messages: Sequence[ChatMessage], params: SamplingParams) -> TokenStream:
        return _SequenceStream(self, self.engine.prompt(messages, True), params)

    def warm(self, messages: Sequence[ChatMessage]) -> TokenStream:
        return _SequenceStream(self, self.engine.prompt(messages, False), None)

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(self.engine.prompt(messages, True))

    def common_prefix(self, prompt: list[int]) -> int:
        """How many leading tokens of ``prompt`` the range holds."""
        common = 0
        for cached, wanted in zip(self.tokens, prompt, strict=False):
            if cached != wanted:
                break
            common += 1
        return common

    def reuse(self, prompt: list[int], keep_last: bool) -> int:
        """Keep the longest prefix the range shares with ``prompt`` (minus the last token
        when its logits are needed); drop the rest. Returns how many tokens were kept."""
        common = self.common_prefix(prompt)
        if keep_last:
            common = min(common, len(prompt) - 1)
        if common < len(self.tokens):
            self.engine.drop_after(self.seq_id, common)
            del self.tokens[common:]
        return common

    def forget(self) -> None:
        """Empty the range (after a failed decode its content is unknown)."""
        self.engine.drop_after(self.seq_id, 0)
        self.tokens.clear()


class _SequenceStream(TokenStream):
    """Prompt chunks not cached yet, then one token per step (``None`` once done)."""

    def __init__(self, sequence: LlamaSequence, prompt: list[int],
                 params: SamplingParams | None) -> None:
        needed = len(prompt) + (params.max_tokens if params else 0)
        if needed > sequence.engine.n_ctx or not prompt:
            raise EngineError(f"prompt of {len(prompt)} tokens does not fit the "
                              f"{sequence.engine.n_ctx}-token context")
        self.sequence = sequence
        self._prompt = prompt
        self._params = params
        self.prompt_tokens = len(prompt)
        self._pending: list[int] | None = None  # prompt tokens still to evaluate
        self._next: int | None = None  # the sampled token, evaluated by the next step
        self._sampler: Any = None
        # Complete UTF-8 characters out, a character split across tokens held back until
        # its last byte; bytes that can never be text come out as U+FFFD.
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._done = False

    def step(self) -> str | None:
        engine = self.sequence.engine
        result = engine.step_together([self], engine.n_batch)[0]
        if isinstance(result, EngineError):
            raise result
        return result

    @property
    def prompt_left(self) -> int:
        if self._pending is not None:
            return len(self._pending)
        cached = self.sequence.common_prefix(self._prompt)
        if self._params is not None:
            cached = min(cached, len(self._prompt) - 1)
        return len(self._prompt) - cached

    def next_input(self, room: int) -> tuple[list[int], bool] | None:
        """This stream's tokens for the coming batch (at most ``room`` prompt tokens; [] when
        there is no room at all) and whether it needs their logits; None when it is done."""
        if self._done:
            return None
        if self._pending is None:
            kept = self.sequence.reuse(self._prompt, keep_last=self._params is not None)
            self.cached_tokens = kept
            self._pending = self._prompt[kept:]
        if self._pending:
            chunk = self._pending[:room]
            return chunk, self._params is not None and len(chunk) == len(self._pending)
        params = self._params
        if params is None or self._next is None or self.generated_tokens >= params.max_tokens:
            self.close()
            return None
        return ([self._next] if room > 0 else []), True

    def evaluated(self, count: int, output: int | None) -> str | None:
        """The batch evaluated ``count`` input tokens of this stream; sample from ``output``."""
        assert self._pending is not None
        if self._pending:
            self.sequence.tokens.extend(self._pending[:count])
            self._pending = self._pending[count:]
        elif self._next is not None:
            self.sequence.tokens.append(self._next)
            self._next = None
        if output is None:
            if self._params is None and not self._pending:
                self.close()
                return None
            return ""
        return self._take_token(output)

    def _take_token(self, output: int) -> str | None:
        engine = self.sequence.engine
        assert self._params is not None
        if self._sampler is None:
            self._sampler = engine.new_sampler(self._params)
        token = engine.sample(self._sampler, output)
        if engine.ends_generation(token):
            self.close()
            return None
        self.generated_tokens += 1
        self._next = token
        text: str = self._text.decode(engine.piece(token))
        return text

    def close(self) -> None:
        self._done = True
        if self._sampler is not None:
            self.sequence.engine.free_sampler(self._sampler)
            self._sampler = None


def _llama_cpp() -> Any:
    os.environ.setdefault("GOMP_SPINCOUNT", GOMP_SPINCOUNT)
    try:
        import llama_cpp
    except ImportError as exc:
        raise EngineError("llama-cpp-python is missing; pip install 'parley[cloud]'") from exc
    return llama_cpp


def _load(path: Path, sequences: int, n_ctx: int, n_threads: int,
          n_batch: int) -> tuple[Any, Any]:
    llama_cpp = _llama_cpp()
    from llama_cpp import _internals

    global _backend_ready
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # llama.cpp's own chatter
    with _LOAD_LOCK:
        if not _backend_ready:
            llama_cpp.llama_backend_init()
            _backend_ready = True
        model_params = llama_cpp.llama_model_default_params()
        # The weight-repacking "extra buffer types" (AMX / repack) crash with a general
        # protection fault in decode on these VMs; plain mmapped weights work.
        model_params.use_extra_bufts = False
        context_params = llama_cpp.llama_context_default_params()
        context_params.n_ctx = n_ctx * sequences
        context_params.n_batch = context_params.n_ubatch = n_batch
        context_params.n_seq_max = sequences
        context_params.kv_unified = False  # each sequence its own n_ctx cells
        context_params.n_threads = context_params.n_threads_batch = n_threads
        try:
            model = _internals.LlamaModel(path_model=str(path), params=model_params,
                                          verbose=False)
            context = _internals.LlamaContext(model=model, params=context_params,
                                              verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise EngineError(f"llama.cpp could not load {path.name}: {exc}") from exc
    return model, context


def _chat_formatter(model: Any) -> Any:
    """Render messages with the GGUF's own chat template (ChatML when it has none)."""
    from jinja2 import TemplateError
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = model.metadata().get("tokenizer.chat_template") or _CHATML
    eos = model.detokenize([model.token_eos()], special=True).decode("utf-8", "replace")
    bos = model.detokenize([model.token_bos()], special=True).decode("utf-8", "replace")
    with_prompt = Jinja2ChatFormatter(template, eos, bos, add_generation_prompt=True)
    without_prompt = Jinja2ChatFormatter(template, eos, bos, add_generation_prompt=False)

    def render(messages: Sequence[ChatMessage], generation_prompt: bool) -> str:
        formatter = with_prompt if generation_prompt else without_prompt
        payload: list[Any] = [{"role": m.role, "content": m.content} for m in messages]
        try:
            return str(formatter(messages=payload).prompt)
        except (ValueError, TemplateError) as exc:  # its raise_exception(), or a bad template
            raise EngineError(f"the chat template refused the prompt: {exc}") from exc

    return render


_CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
