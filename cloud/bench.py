"""``parley bench cloud``: first audio over real WebRTC, one session and N at once.

Starts the tier locally (Ray + Serve on a free loopback port, or uses ``--url``), then simulated
edge clients connect with ``shared.link`` and, once all are connected, send ``transcript.final``
messages (with prosody), one turn at a time: the first at the same moment, the next once the
previous turn's ``tts.end`` arrived. First audio = sending the final -> receiving the first
``tts.chunk``. The single-session figures come from
the same run, before the concurrent phase. Optional phases: ``--context-turns K`` (one session,
K turns, each sent once the previous reply would have finished playing: prompt size and time
to first token at turn 5 vs turn K, from the cloud's ``metrics``)
and ``--idle-sessions K`` (RSS of the gateway replica per idle connected session).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import typer

from cloud.auth import issue_token
from cloud.config import CloudSettings, load_settings
from shared.cli import stdout_to_stderr
from shared.errors import NetworkError
from shared.link import Link, connect
from shared.protocol import Error, Metrics, Prosody, TranscriptFinal, TtsChunk, TtsEnd

bench_app = typer.Typer(help="First audio over WebRTC, 1 vs N sessions.")

QUESTIONS = (
    "What time does the library close on Sundays?",
    "Can you recommend a good book for a long train ride?",
    "How do I make a simple tomato soup?",
    "What is the weather usually like in Lisbon in spring?",
    "Why is the sky blue?",
    "How many legs does a spider have?",
    "Could you remind me to call my sister tomorrow",
    "What is a good name for a small grey cat?",
    "How far is the moon from the earth?",
    "Tell me something nice about mornings.",
)
TURN_TIMEOUT_S = 60.0


def prosody_for(turn: int) -> Prosody:
    """Varied, realistic prosody: rates around 2.7 words/s, some rising endings."""
    return Prosody(f0_mean_hz=120.0 + 10 * (turn % 3), f0_final_slope_hz_per_s=(-15.0, 5.0,
                   40.0)[turn % 3], energy_db=-22.0, speaking_rate_wps=(2.4, 2.8, 3.1)[turn % 3],
                   pause_before_ms=400.0)


@dataclass
class ClientResult:
    first_audio_ms: list[float] = field(default_factory=list)
    metrics: list[dict[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def run_turn(link: Link, turn_id: int, text: str, result: ClientResult) -> float:
    """Send one final; wait for tts.end (and the turn's metrics). Returns when the reply's
    playback would end on a real edge (perf_counter time)."""
    sent = time.perf_counter()
    await link.send(TranscriptFinal(turn_id=turn_id, text=text, prosody=prosody_for(turn_id)))
    first: float | None = None
    ended = False
    played_until = sent
    async for msg in link:
        if isinstance(msg, TtsChunk) and msg.turn_id == turn_id and first is None:
            first = (time.perf_counter() - sent) * 1000.0
        elif isinstance(msg, Error):
            result.errors.append(f"{msg.code}: {msg.message}")
            if msg.code == "turn_failed":
                return played_until
        elif isinstance(msg, TtsEnd) and msg.turn_id == turn_id:
            ended = True
            played_until = sent + (first or 0.0) / 1000.0 + msg.total_samples / 16000.0
        elif isinstance(msg, Metrics) and msg.turn_id == turn_id:
            result.metrics.append(dict(msg.stages_ms))
            if ended:
                break
    if first is None or not ended:
        result.errors.append(f"turn {turn_id} ended without audio")
        return played_until
    result.first_audio_ms.append(first)
    return played_until


async def run_client(url: str, token: str, turns: int, offset: int = 0,
                     listen: bool = False, start: asyncio.Barrier | None = None) -> ClientResult:
    """One simulated edge. With ``listen`` it waits, like a user, until the reply would have
    finished playing before the next turn (otherwise right after ``tts.end``). With ``start``
    its first turn waits until every client of the barrier is connected."""
    result = ClientResult()
    try:
        link = await connect(url, token)
    except NetworkError as exc:
        result.errors.append(f"connect: {exc}")
        if start is not None:
            await start.abort()
        return result
    try:
        if start is not None:
            try:
                await start.wait()
            except asyncio.BrokenBarrierError:
                result.errors.append("another client could not connect")
                return result
        for turn in range(1, turns + 1):
            text = QUESTIONS[(turn + offset) % len(QUESTIONS)]
            try:
                until = await asyncio.wait_for(run_turn(link, turn, text, result),
                                               TURN_TIMEOUT_S)
                if listen:
                    await asyncio.sleep(max(0.0, until - time.perf_counter()))
            except (TimeoutError, NetworkError) as exc:
                result.errors.append(f"turn {turn}: {type(exc).__name__} {exc}")
    finally:
        await link.close()
    return result


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[index], 1)


def summary(values: list[float]) -> dict[str, float | None]:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95)}


async def concurrent(url: str, secret: bytes, sessions: int, turns: int,
                     tag: str) -> list[ClientResult]:
    """``sessions`` clients connect, then all send their first final at the same moment."""
    tokens = [issue_token(secret, f"{tag}-{i}", 3600) for i in range(sessions)]
    start = asyncio.Barrier(sessions)
    return list(await asyncio.gather(*(run_client(url, tokens[i], turns, offset=i, start=start)
                                       for i in range(sessions))))


async def context_growth(url: str, secret: bytes, turns: int) -> dict[str, Any]:
    """One session of ``turns`` turns: prompt tokens and TTFT near turn 5 vs the last turns."""
    result = await run_client(url, issue_token(secret, "bench-context", 3600), turns,
                              listen=True)
    m = result.metrics

    def around(index: int, key: str) -> float | None:
        window = [x[key] for x in m[max(0, index - 1): index + 2] if key in x]
        return round(statistics.median(window), 1) if window else None

    last = len(m) - 1
    return {"turns": len(m), "errors": len(result.errors),
            "turn5": {"prompt_tokens": m[4].get("prompt_tokens") if len(m) > 4 else None,
                      "ttft_ms": around(4, "llm_ttft")},
            f"turn{turns}": {"prompt_tokens": m[last].get("prompt_tokens") if m else None,
                             "ttft_ms": around(last - 1, "llm_ttft")}}


async def idle_memory(url: str, secret: bytes, count: int) -> dict[str, Any]:
    """RSS delta of the gateway replica per idle connected session."""
    before = await gateway_rss(url)
    links = []
    for i in range(count):
        links.append(await connect(url, issue_token(secret, f"bench-idle-{i}", 3600)))
    await asyncio.sleep(2.0)
    after = await gateway_rss(url)
    for link in links:
        await link.close()
    per = (after - before) / count if before and after else None
    return {"sessions": count, "rss_before_mb": round(before / 2**20, 1),
            "rss_after_mb": round(after / 2**20, 1),
            "kb_per_idle_session": round(per / 1024, 1) if per is not None else None}


async def gateway_rss(url: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(url.rstrip("/") + "/metrics")).text
    match = re.search(r"^process_resident_memory_bytes ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


async def run_bench(url: str, secret: bytes, sessions: int, turns: int, context_turns: int,
                    idle_sessions: int) -> dict[str, Any]:
    await run_client(url, issue_token(secret, "bench-warm", 3600), 1)  # first-use costs
    single = await concurrent(url, secret, 1, max(turns, 5), "bench-single")
    many = await concurrent(url, secret, sessions, turns, "bench-many")
    first = [ms for r in many for ms in r.first_audio_ms]
    single_first = [ms for r in single for ms in r.first_audio_ms]
    report: dict[str, Any] = {
        "turns_completed": len(first),
        "errors": sum(len(r.errors) for r in many),
        "first_audio_ms": summary(first),
        "single_session_first_audio_ms": summary(single_first),
        "sessions": sessions, "turns": turns,
        "single_session_errors": sum(len(r.errors) for r in single),
        "error_samples": [e for r in many + single for e in r.errors][:5],
    }
    report["stage_medians_ms"] = {"single": stage_medians(single), "many": stage_medians(many)}
    p50 = report["single_session_first_audio_ms"]["p50"]
    p95 = report["first_audio_ms"]["p95"]
    report["p95_over_single_p50"] = round(p95 / p50, 2) if p50 and p95 else None
    if context_turns:
        report["context"] = await context_growth(url, secret, context_turns)
    if idle_sessions:
        report["idle_memory"] = await idle_memory(url, secret, idle_sessions)
    return report


def stage_medians(results: list[ClientResult]) -> dict[str, float]:
    """Median of each stage the cloud reported (its own view of where the time went)."""
    keys = {k for r in results for m in r.metrics for k in m}
    return {k: round(statistics.median([m[k] for r in results for m in r.metrics if k in m]), 1)
            for k in sorted(keys)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@bench_app.command()
def cloud(
    sessions: int = typer.Option(4, min=1, help="Concurrent simulated edges."),
    turns: int = typer.Option(5, min=1, help="Turns per edge."),
    context_turns: int = typer.Option(0, help="Also run one session of this many turns."),
    idle_sessions: int = typer.Option(0, help="Also measure RSS per idle session."),
    url: str = typer.Option(None, help="Use a running tier (needs its token secret)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """First audio p50/p95 for one session and for N sessions at once, over WebRTC."""
    settings: CloudSettings = load_settings(port=free_port() if url is None else None)
    secret = settings.secret()
    embedded = url is None
    with stdout_to_stderr():  # Ray's processes print to our stdout: keep it for the report
        if url is None:
            from cloud.cli import prepare, start_embedded

            prepare(settings)
            start_embedded(settings)
            url = f"http://{settings.host}:{settings.port}"
        try:
            report = asyncio.run(run_bench(url, secret, sessions, turns, context_turns,
                                           idle_sessions))
        finally:
            if embedded:
                from cloud import deployments

                deployments.stop()
    typer.echo(json.dumps(report) if as_json else json.dumps(report, indent=2))
