"""``parley bench models``: ASR, TTS and LLM speed on this machine, in one report.

Each engine is measured by its own benchmark command in its own process (so one engine's
threads and memory do not disturb the next): ``parley asr bench``, ``parley tts bench`` and
``parley llm chat`` (repeated). The report keeps their medians side by side.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from typing import Annotated, Any

import typer

from shared.errors import EngineError

bench_app = typer.Typer(help="ASR / TTS / LLM speed on this machine.")

LLM_PROMPTS = ("What time does the museum open?", "Tell me a fun fact about owls.",
               "How do I get to the train station?")


@bench_app.command()
def models(
    repeat: Annotated[int, typer.Option(min=1, max=20, help="Runs per measurement.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Speech recognition RTF, synthesis RTF and first audio, LLM first token and rate."""
    asr = _run(["asr", "bench", "--threads", "1", "--repeat", str(repeat)])
    tts = _run(["tts", "bench", "--threads", "1", "--repeats", str(repeat)])
    llm = [_run(["llm", "chat", prompt, "--max-tokens", "48"])
           for prompt in LLM_PROMPTS for _ in range(max(1, repeat // 2))]
    report: dict[str, Any] = {
        "asr": asr,
        "tts": tts,
        "llm": {"ttft_ms_p50": statistics.median(r["ttft_ms"] for r in llm),
                "tokens_per_s_p50": statistics.median(r["tokens_per_s"] for r in llm),
                "runs": len(llm), "note": "each run loads the model afresh, then warms it up"},
    }
    typer.echo(json.dumps(report) if as_json else json.dumps(report, indent=2))


def _run(args: list[str]) -> Any:
    cmd = [sys.executable, "-m", "shared.cli", *args, "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EngineError(f"'parley {' '.join(args[:2])}' failed: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
