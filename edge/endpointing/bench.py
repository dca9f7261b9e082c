"""``parley bench endpointing``: the end-of-turn detector against fixed silence timeouts.

One run, one held-out set (``eval_set`` split ``test``), one VAD pass per item: the detector's
policy and the 0.2 / 0.5 / 0.8 s timeouts decide on the same VAD events and the same 50 ms
ticks. The detector waits for the transcript of the turn up to the pause (the real recognizer's
text, decoded on the edge's single recognizer thread, see ``simulate.py``) and for prosody.
Reported per rule: premature cuts (% of paused turns ended inside a mid-turn pause) and the
median / p95 delay from the true end of speech to the end-of-turn decision on complete turns.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
import typer

from edge.endpointing.eval_set import EvalItem, default_cache_dir, load_set
from edge.endpointing.simulate import (
    CostModel,
    Score,
    Trace,
    TranscriptSource,
    VadReplay,
    policy_decision,
    score,
    timeout_decision,
    trace_item,
)
from edge.endpointing.transcripts import KnownTranscripts, RecognizerTranscripts
from edge.vad import QUIET_DB, VadConfig
from shared.audio import PROCESSING_RATE
from shared.errors import ConfigError

# The endpointing path wants the end of speech early: one silent 32 ms window, or two quiet
# ones, end it (the detector, not the VAD, decides whether the pause ends the turn). As the
# edge's defaults (edge/config.py).
ENDPOINT_VAD = VadConfig(threshold=0.5, min_speech_s=0.03, min_silence_s=0.032,
                         quiet_db=QUIET_DB)
TIMEOUTS_S = (0.2, 0.5, 0.8)
# The detector waits for the recognizer, the timeouts do not: its delay on a slower device is
# replayed with every decode (and prosody) this many times slower. 2.5x and 6x are about a
# Raspberry Pi 5 and 4 against this machine (README: the edge's per-stage costs, scaled by
# published single-core scores).
SLOWER_DECODE = (1.5, 2.5, 6.0)
DEFAULT_SIZE = (100, 100)
KNOWN_TEXT_ASR_COST = CostModel(fixed=0.10, per_second=0.05)
PROSODY_PER_SECOND_FALLBACK = 0.01

bench_app = typer.Typer(help="End-of-turn detector vs fixed silence timeouts.")


@bench_app.command()
def endpointing(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    n_complete: Annotated[int, typer.Option(help="Complete turns in the test set.")] = (
        DEFAULT_SIZE[0]),
    n_paused: Annotated[int, typer.Option(help="Turns with mid-turn pauses.")] = DEFAULT_SIZE[1],
    known_text: Annotated[bool, typer.Option(
        help="Use the known words instead of the recognizer (development only).")] = False,
    asr_cost: Annotated[str, typer.Option(
        help="Decode time 'FIXED,PER_AUDIO_SECOND' in seconds instead of the measured fit.")
    ] = "",
) -> None:
    """Premature cuts and end-of-turn delays: detector vs 0.2 / 0.5 / 0.8 s timeouts."""
    if n_complete < 1 or n_paused < 1:
        raise ConfigError("--n-complete and --n-paused must be at least 1")
    report = run(n_complete, n_paused, known_text, _parse_cost(asr_cost))
    if as_json:
        typer.echo(json.dumps(report, indent=1))
    else:
        typer.echo(_table(report))


def run(n_complete: int, n_paused: int, known_text: bool,
        asr_cost: CostModel | None) -> dict[str, Any]:
    """Replay the test split and score the detector and the timeouts on the same traces."""
    from edge.endpointing.detector import EndOfTurnPolicy

    items = load_set("test", n_complete, n_paused)
    source, source_name = transcript_source(known_text)
    traces, cost, cost_origin, prosody_cost, replay_all = _replay(items, source, asr_cost)
    policy = EndOfTurnPolicy()
    rules: dict[str, Score] = {"detector": score(traces, _policy_rule(policy))}
    slower = {f"{factor:g}x": score(replay_all(_scaled(cost, factor),
                                               _scaled(prosody_cost, factor)),
                                    _policy_rule(policy)).as_json()
              for factor in SLOWER_DECODE}
    for seconds in TIMEOUTS_S:
        rules[f"timeout_{seconds:.1f}s"] = score(traces, _timeout_rule(seconds))
    return {
        "set": {"split": "test", "complete": n_complete, "paused": n_paused,
                "voices": sorted({it.voice for it in items}), "transcripts": source_name},
        "assumptions": _assumptions(source, cost, cost_origin, prosody_cost),
        "policy": {"text_threshold": policy.text_threshold,
                   "end_threshold": policy.end_threshold,
                   "speculative_threshold": policy.speculative_threshold,
                   "max_pause_ms": policy.max_pause_ms},
        "rules": {name: s.as_json() for name, s in rules.items()},
        "detector_with_slower_decode": slower,
        "by_kind": _by_kind(traces, policy),
        "speculation": _speculation(traces, policy),
        "detector_delay_breakdown_ms": _breakdown(traces, policy),
        "cost": {"detector_us_per_call": _detector_cost_us(traces, policy),
                 "prosody_ms_per_audio_s": round(prosody_cost.per_second * 1000, 3)},
        "acceptance": _acceptance(rules),
    }


Replay = Callable[[CostModel, CostModel], list[Trace]]


def _replay(items: list[EvalItem], source: TranscriptSource, asr_cost: CostModel | None,
            ) -> tuple[list[Trace], CostModel, str, CostModel, Replay]:
    """Traces of every item; the decode cost is ``asr_cost``, else measured on the real
    recognizer (fastest of 3 runs on a dozen turns), else an assumption (known words). Also
    returns the replay itself, for other decode and prosody costs."""
    from edge.vad import SileroVad

    replay = VadReplay(SileroVad(ENDPOINT_VAD))
    events = [replay.events(it) for it in items]
    prosody_cost = _prosody_cost(items)

    def replay_all(cost: CostModel, prosody: CostModel = prosody_cost) -> list[Trace]:
        traces = [trace_item(it, ev, source, cost, prosody)
                  for it, ev in zip(items, events, strict=True)]
        if isinstance(source, RecognizerTranscripts):
            source.save()
        return traces

    cost, origin = asr_cost or KNOWN_TEXT_ASR_COST, "--asr-cost" if asr_cost else "assumed"
    traces = replay_all(cost)
    if asr_cost is None and isinstance(source, RecognizerTranscripts):
        cost, origin = source.timed_cost(_timing_clips(traces)), "fastest of 3 runs, fitted"
        traces = replay_all(cost)
    return traces, cost, origin, prosody_cost, replay_all


def _scaled(cost: CostModel, factor: float) -> CostModel:
    return CostModel(cost.fixed * factor, cost.per_second * factor)


def _assumptions(source: TranscriptSource, cost: CostModel, origin: str,
                 prosody_cost: CostModel) -> dict[str, Any]:
    cached = source.median_call_s() if isinstance(source, RecognizerTranscripts) else None
    return {
        "vad": {"min_silence_s": ENDPOINT_VAD.min_silence_s, "threshold": ENDPOINT_VAD.threshold,
                "frame_ms": 10},
        "tick_ms": 50,
        "policy_runs_when_the_transcript_arrives": True,
        "asr_decode_s": {"fixed": round(cost.fixed, 4), "per_audio_s": round(cost.per_second, 4),
                         "source": origin,
                         "median_of_cached_calls": None if cached is None else round(cached, 4)},
        "prosody_s_per_audio_s": round(prosody_cost.per_second, 5),
        "partials_every_s": 1.0,
    }


def transcript_source(known_text: bool) -> tuple[TranscriptSource, str]:
    """The recognizer's transcripts (cached), or the known words when asked."""
    if known_text:
        return KnownTranscripts(), "known words"
    transcribe, stamp = _recognizer()
    cache = default_cache_dir() / f"transcripts-{stamp}.json"
    return RecognizerTranscripts(transcribe, cache), f"recognizer {stamp}"


def _recognizer() -> tuple[Any, str]:
    """The edge's default recognizer as ``samples -> text``, and a stamp of its model."""
    import hashlib

    from models import registry

    spec = registry.default_spec("asr")
    stamp_file = registry.models_dir() / spec.name / "BUILD.json"
    if not stamp_file.is_file():
        from shared.errors import ModelNotReadyError

        raise ModelNotReadyError(f"{spec.name} is not built; run: parley models build "
                                 f"{spec.name} (or pass --known-text)")
    from edge.asr import load_recognizer
    from edge.config import EdgeSettings

    # Timed as the edge runs it (its default thread count).
    recognizer = load_recognizer(num_threads=EdgeSettings.model_fields["asr_threads"].default)
    # the cache holds texts of this model decoded this way
    config = getattr(recognizer, "config", None)
    decoding = repr((getattr(config, "tail_silence_s", None),
                     getattr(config, "retry_tail_silence_s", None)))
    stamp = hashlib.sha1(stamp_file.read_bytes() + decoding.encode()).hexdigest()[:10]
    return (lambda samples: str(recognizer.transcribe(samples).text)), f"{spec.name}-{stamp}"


def _timing_clips(traces: list[Trace], count: int = 12) -> list[np.ndarray]:
    """Turn audio up to the final pause of ``count`` items spread over the set."""
    from edge.endpointing.simulate import PREROLL

    clips = []
    for trace in traces[:: max(1, len(traces) // count)][:count]:
        item = trace.item
        start = max(0, item.spans[0].start - PREROLL)
        clips.append(item.audio[start:item.speech_end + PROCESSING_RATE // 5])
    return clips


def _policy_rule(policy: Any) -> Any:
    def commit(pause_ms: float, text: str, prosody: Any) -> bool:
        return bool(policy.decide(pause_ms, text, prosody).commit)

    return lambda trace: policy_decision(trace, commit)


def _timeout_rule(seconds: float) -> Callable[[Trace], int | None]:
    return lambda trace: timeout_decision(trace, seconds)


def _by_kind(traces: list[Trace], policy: Any) -> dict[str, dict[str, float]]:
    rule = _policy_rule(policy)
    out: dict[str, dict[str, float]] = {}
    for kind in sorted({t.item.kind for t in traces}):
        subset = [t for t in traces if t.item.kind == kind]
        s = score(subset, rule)
        out[kind] = ({"delay_median_ms": round(s.delay_median_ms, 1)} if kind == "complete"
                     else {"premature_pct": round(s.premature_pct, 1), "n": s.n_paused})
    return out


def _speculation(traces: list[Trace], policy: Any) -> dict[str, float]:
    """How early the speculative final goes out, and how often it is wrong (paused turns)."""
    def speculate(pause_ms: float, text: str, prosody: Any) -> bool:
        return bool(policy.decide(pause_ms, text, prosody).speculate)

    s = score(traces, lambda tr: policy_decision(tr, speculate))
    return {"wrong_early_finals_pct": round(s.premature_pct, 1),
            "delay_median_ms": round(s.delay_median_ms, 1),
            "delay_p95_ms": round(s.delay_p95_ms, 1)}


def _breakdown(traces: list[Trace], policy: Any) -> dict[str, float]:
    """Where the detector's delay goes on complete turns (medians from the true end of
    speech): the VAD reporting the pause, the transcript + prosody being ready, the decision."""
    rule = _policy_rule(policy)
    vad, ready, decided = [], [], []
    for trace in traces:
        final = next((p for p in trace.pauses if p.final), None)
        at = rule(trace)
        if trace.item.kind != "complete" or final is None or final.ready_at is None or at is None:
            continue
        vad.append(final.decided_at - trace.true_end)
        ready.append(final.ready_at - trace.true_end)
        decided.append(at - trace.true_end)

    def ms(values: list[int]) -> float:
        return round(float(np.median(values)) * 1000.0 / PROCESSING_RATE, 1) if values else 0.0

    return {"vad_reports_pause": ms(vad), "transcript_and_prosody_ready": ms(ready),
            "end_of_turn": ms(decided)}


def _detector_cost_us(traces: list[Trace], policy: Any) -> dict[str, float]:
    """Median microseconds of one ``decide`` call: the first of a pause (the transcript's cues
    are read) and the following ticks (cues cached)."""
    from edge.endpointing.features import text_cues

    calls = [(p.text, p.prosody) for t in traces for p in t.pauses][:1000]
    first: list[float] = []
    ticks: list[float] = []
    for text, prosody in calls:
        text_cues.cache_clear()
        for timings in (first, ticks):
            t0 = time.perf_counter()
            policy.decide(400.0, text, prosody)
            timings.append(time.perf_counter() - t0)
    if not calls:
        return {"first_call": 0.0, "tick": 0.0}
    return {"first_call": round(float(np.median(first)) * 1e6, 1),
            "tick": round(float(np.median(ticks)) * 1e6, 1)}


def _prosody_cost(items: list[EvalItem]) -> CostModel:
    """Prosody seconds per audio second: median over 20 turns of the fastest of 3 runs."""
    from edge.prosody import analyze

    per_second = []
    for it in items[:: max(1, len(items) // 20)]:
        audio = it.audio[: it.speech_end + PROCESSING_RATE // 5]
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            analyze(audio)
            runs.append(time.perf_counter() - t0)
        per_second.append(min(runs) / (audio.size / PROCESSING_RATE))
    value = float(np.median(per_second)) if per_second else PROSODY_PER_SECOND_FALLBACK
    return CostModel(fixed=0.0, per_second=value)


def _acceptance(rules: dict[str, Score]) -> dict[str, Any]:
    d = rules["detector"]
    timeouts = {k: v for k, v in rules.items() if k != "detector"}

    def better(t: Score) -> bool:
        cut, delay = d.premature_pct, d.delay_median_ms
        return ((cut < t.premature_pct and delay <= t.delay_median_ms)
                or (delay < t.delay_median_ms and cut <= t.premature_pct))

    checks = {"premature_at_most_5pct": d.premature_pct <= 5.0,
              "median_delay_at_most_300ms": d.delay_median_ms <= 300.0,
              **{f"dominates_{k}": better(v) for k, v in timeouts.items()}}
    return {**checks, "passed": all(checks.values())}


def _parse_cost(text: str) -> CostModel | None:
    if not text:
        return None
    try:
        fixed, per_second = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise ConfigError(f"--asr-cost wants 'FIXED,PER_SECOND' in seconds, got {text!r}") from exc
    return CostModel(fixed, per_second)


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(report: dict[str, Any]) -> str:
    lines = [f"{'rule':<16}{'premature %':>12}{'median ms':>11}{'p95 ms':>9}"]
    for name, s in report["rules"].items():
        lines.append(f"{name:<16}{_num(s['premature_pct'], 1):>12}{_num(s['delay_median_ms']):>11}"
                     f"{_num(s['delay_p95_ms']):>9}")
    for factor, s in report["detector_with_slower_decode"].items():
        lines.append(f"{'detector@' + factor:<16}{_num(s['premature_pct'], 1):>12}"
                     f"{_num(s['delay_median_ms']):>11}{_num(s['delay_p95_ms']):>9}")
    lines.append(f"detector cost (us/call): {report['cost']['detector_us_per_call']}; prosody "
                 f"{report['cost']['prosody_ms_per_audio_s']} ms per audio second")
    lines.append(f"acceptance: {report['acceptance']}")
    return "\n".join(lines)
