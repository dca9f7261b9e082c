"""``parley llm chat TEXT [--json]``: one reply from the language model, with its timings."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cloud.conversation.context import DEFAULT_SYSTEM_PROMPT
from cloud.engines.llama import LlamaEngine
from cloud.engines.llm import ChatMessage, SamplingParams, chat_once

app = typer.Typer(no_args_is_help=True, help="The language model.")


@app.callback()
def _group() -> None:
    """The language model (llama.cpp)."""


@app.command()
def chat(
    text: str = typer.Argument(..., help="What the user says."),
    model: Path = typer.Option(None, help="A GGUF file (default: the registry's llm model)."),
    max_tokens: int = typer.Option(64, min=1, help="Reply length cap in tokens."),
    threads: int = typer.Option(1, min=1, help="llama.cpp threads."),
    system: str = typer.Option(DEFAULT_SYSTEM_PROMPT, help="The system prompt."),
    as_json: bool = typer.Option(False, "--json", help='Print {"text","ttft_ms","tokens_per_s"}.'),
) -> None:
    """Answer TEXT once and report the time to the first token and the token rate."""
    llm = LlamaEngine(model, n_threads=threads).models[0]
    llm.warm_up()
    messages = [ChatMessage("system", system), ChatMessage("user", text)]
    result = chat_once(llm, messages, SamplingParams(max_tokens=max_tokens))
    if as_json:
        typer.echo(json.dumps({"text": result.text, "ttft_ms": round(result.ttft_ms, 1),
                               "tokens_per_s": round(result.tokens_per_s, 1),
                               "prompt_tokens": result.prompt_tokens}))
    else:
        typer.echo(result.text)
        typer.echo(f"(first token {result.ttft_ms:.0f} ms, {result.tokens_per_s:.0f} tokens/s)",
                   err=True)
