"""``parley bench edge``: what the edge front end costs, per stage, on this machine.

A conversation-like recording is built (the agent's replies through a simulated room, the
user's questions, and the user talking over a reply), then run through the real front end —
AEC, VAD, speculative and partial Whisper decodes, prosody, end of turn — in lockstep, the
way ``parley edge process`` does. Stage costs are CPU-bound, so they translate to other
machines by single-core speed ratios (see README: "On a Raspberry Pi").
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any

import numpy as np
import typer

from edge.audio_io import FileDuplex
from edge.config import load_settings
from edge.factory import build_stages
from edge.pipeline import EdgeAgent
from shared.audio import PROCESSING_RATE, Samples

bench_app = typer.Typer(help="Edge front-end cost per stage.")

# Slowdown of one core relative to this machine (a Sapphire Rapids-class Xeon), from published
# single-core scores (Geekbench 6: Xeon ~1900, Pi 5 ~800, Pi 4 ~300): a planning figure.
PI_SLOWDOWN = {"raspberry_pi_5": 2.5, "raspberry_pi_4": 6.0}


@bench_app.command()
def edge(
    repeat: Annotated[int, typer.Option(min=1, help="Runs; medians are reported.")] = 3,
    partials: Annotated[bool, typer.Option(help="Decode partial hypotheses while the "
                                           "user speaks, as live runs do.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Per-stage milliseconds per second of audio and the real-time factor."""
    mic, far = conversation_recording()
    runs = [run_once(mic, far, partials) for _ in range(repeat)]
    report = summarize(runs, mic.size / PROCESSING_RATE)
    typer.echo(json.dumps(report) if as_json else _render(report))


def conversation_recording(seed: int = 5) -> tuple[Samples, Samples]:
    """~25 s: a far-end reply, double talk, then user-only questions (mic, far)."""
    from edge.room import build_scene
    from models.corpus import espeak_utterance, silence

    scene = build_scene("double_talk", seed=seed)
    questions = [espeak_utterance(t, voice=v).audio for t, v in (
        ("What time do you close tonight?", "en-us+f2"),
        ("Can I pay with a credit card at the counter?", "en-gb-x-rp"))]
    tail = np.concatenate([silence(1.0), questions[0], silence(1.5), questions[1], silence(1.0)])
    mic = np.concatenate([scene.mic, tail]).astype(np.float32)
    far = np.concatenate([scene.far, np.zeros(tail.size, np.float32)]).astype(np.float32)
    return mic, far


def run_once(mic: Samples, far: Samples, partials: bool) -> dict[str, float]:
    settings = load_settings(partial_interval_s=1.0 if partials else 0.0,
                             continuation_window_s=0.0)
    agent = EdgeAgent(FileDuplex(mic, realtime=False, far=far), build_stages(settings),
                      lockstep=True)
    t0 = time.perf_counter()
    asyncio.run(agent.run())
    out = {f"{k}_s": v for k, v in agent.stage_s.items()}
    out["wall_s"] = time.perf_counter() - t0
    out["turns"] = float(sum(1 for r in agent.records.values() if r.final_sent is not None))
    return out


def summarize(runs: list[dict[str, float]], audio_s: float) -> dict[str, Any]:
    med = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
    stages = ("aec", "vad", "asr", "prosody")
    per_s = {s: round(med[f"{s}_s"] * 1000.0 / audio_s, 2) for s in stages}
    compute = sum(med[f"{s}_s"] for s in stages)
    rtf = compute / audio_s
    return {
        "audio_s": round(audio_s, 2), "runs": len(runs), "turns": med["turns"],
        "stage_ms_per_audio_s": per_s,
        "front_end_rtf": round(rtf, 4),
        "wall_rtf": round(med["wall_s"] / audio_s, 4),
        "estimated_rtf": {pi: round(rtf * k, 3) for pi, k in PI_SLOWDOWN.items()},
    }


def _render(r: dict[str, Any]) -> str:
    stages = "  ".join(f"{k} {v} ms/s" for k, v in r["stage_ms_per_audio_s"].items())
    return (f"{r['audio_s']} s of audio, {r['turns']} turns, median of {r['runs']} runs\n"
            f"per second of audio: {stages}\nfront-end RTF {r['front_end_rtf']} "
            f"(wall {r['wall_rtf']}); estimated: {r['estimated_rtf']}")
