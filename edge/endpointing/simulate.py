"""Replays an evaluation item through the edge's turn-taking, as the pipeline runs it.

The same timeline as ``edge/pipeline.py`` + ``edge/turns.py``: the silero VAD (``edge.vad``)
sees the audio in 10 ms frames; a turn starts 250 ms before the first speech onset; while the
user speaks, a partial decode of the turn so far is requested every second; at each end of
speech a speculative final decode of the turn up to that moment is requested: when the level
first falls (``SpeechPausing``, a window before the VAD confirms the pause) or, for a pause the
VAD ended otherwise, when it reports it (its own latency included). One recognizer thread
runs the decodes, newest request first (as ``edge.asr_worker.NewestFirstWorker``; a partial
never replaces a waiting final): a decode waits for the one running. Prosody is measured
once the final decode is back. The end-of-turn policy runs as soon as that transcript is known
(assumed: the turn-taker asks the policy when the decode arrives), then on every 50 ms tick;
a fixed timeout needs no transcript and decides on the tick.

Decode and prosody times come from cost models (compute seconds = a + b x audio seconds),
measured on this machine (``bench.py``) or given, so that one busy moment of a shared host
does not move single items around.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edge.endpointing.eval_set import EvalItem
from edge.prosody import ProsodyFeatures, analyze
from edge.turns import TurnTimings
from edge.vad import SpeechEnded, SpeechPausing, SpeechStarted, VadEvent, VoiceActivityDetector
from shared.audio import PROCESSING_RATE

FRAME = 160  # 10 ms
TICK = 5 * FRAME  # the policy runs every 50 ms
PREROLL = TurnTimings().preroll
PARTIAL_EVERY = TurnTimings().partial_every


class TranscriptSource(Protocol):
    """Text of a stretch of an item's audio (a recognizer, or the known words)."""

    def transcribe(self, item: EvalItem, start: int, upto: int) -> str: ...


@dataclass(frozen=True, slots=True)
class CostModel:
    """Compute seconds of a call on ``seconds`` of audio: ``fixed + per_second * seconds``."""

    fixed: float
    per_second: float

    def __call__(self, seconds: float) -> float:
        return self.fixed + self.per_second * max(0.0, seconds)


@dataclass(frozen=True, slots=True)
class Pause:
    """One pause the edge saw, with what the policy could know and when."""

    speech_end: int  # the VAD's estimate of the end of speech
    decided_at: int  # when the VAD reported it
    resumed_at: int | None  # when the VAD reported speech again (None: it never did)
    ready_at: int | None  # when the transcript and prosody were known (None: superseded)
    text: str
    prosody: ProsodyFeatures
    final: bool  # the turn had truly ended before this pause (the label)


@dataclass(frozen=True, slots=True)
class Trace:
    item: EvalItem
    pauses: tuple[Pause, ...]

    @property
    def true_end(self) -> int:
        return self.item.speech_end


@dataclass
class _Worker:
    """The recognizer thread: one decode at a time, a newer waiting request wins."""

    cost: Callable[[int], float]  # upto (sample) -> compute seconds
    free_at: int = 0
    pending: tuple[int, int, Any] | None = None  # (requested_at, upto, tag)
    pending_final: bool = False
    finished: dict[Any, int] = field(default_factory=dict)

    def request(self, now: int, upto: int, tag: Any, final: bool = False) -> None:
        self.advance(now)
        if self.free_at <= now:
            self._run(now, upto, tag)
        elif final or not self.pending_final:  # a partial never replaces a waiting final
            self.pending, self.pending_final = (now, upto, tag), final

    def advance(self, now: int) -> None:
        if self.pending is not None and self.free_at <= now:
            _, upto, tag = self.pending
            self.pending, self.pending_final = None, False
            self._run(self.free_at, upto, tag)

    def _run(self, start_at: int, upto: int, tag: Any) -> None:
        self.free_at = start_at + int(self.cost(upto) * PROCESSING_RATE)
        self.finished[tag] = self.free_at


class VadReplay:
    """Runs one VAD over item after item, reset in between (event samples count from the
    item's first sample)."""

    def __init__(self, vad: VoiceActivityDetector) -> None:
        self.vad = vad

    def events(self, item: EvalItem) -> list[VadEvent]:
        """The VAD's events over the item, fed in 10 ms frames as the pipeline does."""
        self.vad.reset()
        out: list[VadEvent] = []
        for i in range(0, item.audio.size - FRAME + 1, FRAME):
            out.extend(self.vad.push(item.audio[i:i + FRAME]))
        return out


def trace_item(item: EvalItem, events: list[VadEvent],
               source: TranscriptSource, asr_cost: CostModel, prosody_cost: CostModel,
               judged_from_ms: float | None = None) -> Trace:
    """Replay the item: when each pause's transcript and prosody became known, and what.

    A pause is transcribed when its transcript reached the edge before the user resumed or,
    with ``judged_from_ms`` (training), when it is final or lasted at least that long;
    other pauses keep an empty text (decoding them would change nothing)."""
    starts = [e for e in events if isinstance(e, SpeechStarted)]
    if not starts:
        return Trace(item, ())
    turn_start = max(0, starts[0].sample - PREROLL)
    pauses = []
    for end, upto, done in _schedule(events, turn_start, asr_cost):
        resumed = next((s.decided_at for s in starts if s.decided_at > end.decided_at), None)
        audio = item.audio[turn_start:upto]
        ready = None
        if done is not None and (resumed is None or done < resumed):
            ready = done + int(prosody_cost(audio.size / PROCESSING_RATE) * PROCESSING_RATE)
        final = end.decided_at > item.speech_end
        length_ms = ((resumed or item.audio.size) - end.sample) * 1000.0 / PROCESSING_RATE
        judged = judged_from_ms is not None and (final or length_ms >= judged_from_ms)
        text = source.transcribe(item, turn_start, upto) if ready or judged else ""
        pauses.append(Pause(end.sample, end.decided_at, resumed, ready, text, analyze(audio),
                            final))
    return Trace(item, tuple(pauses))


def _schedule(events: list[VadEvent], turn_start: int,
              asr_cost: CostModel) -> list[tuple[SpeechEnded, int, int | None]]:
    """Run the recognizer thread over the turn: each end of speech, the sample its
    speculative final decode ran up to, and when that decode finished (None: superseded)."""
    worker = _Worker(cost=lambda upto: asr_cost((upto - turn_start) / PROCESSING_RATE))
    requests, ends = _requests(events, turn_start)
    for kind, at, upto in requests:
        worker.request(at, upto, (kind, at), final=kind == "final")
    worker.advance(10**12)
    return [(end, upto, worker.finished.get(("final", upto))) for end, upto in ends]


def _requests(events: list[VadEvent], turn_start: int,
              ) -> tuple[list[tuple[str, int, int]], list[tuple[SpeechEnded, int]]]:
    """Decode requests in time order (as ``edge.turns.TurnTaker`` makes them): a partial
    every second of speech, a final when the level falls (``SpeechPausing``) or, for a pause
    the VAD ended otherwise, at its end; and each end of speech with its final's ``upto``."""
    out: list[tuple[str, int, int]] = []
    ends: list[tuple[SpeechEnded, int]] = []
    speaking_since: int | None = None
    last_partial = turn_start
    early: SpeechPausing | None = None
    for e in events:
        if isinstance(e, SpeechStarted):
            speaking_since, early = e.decided_at, None
            continue
        if speaking_since is not None:
            t = next_tick(speaking_since)
            while t < e.decided_at:
                if t - max(turn_start, last_partial) >= PARTIAL_EVERY:
                    out.append(("partial", t, t))
                    last_partial = t
                t += TICK
        if isinstance(e, SpeechPausing):
            early, speaking_since, last_partial = e, e.decided_at, e.decided_at
            out.append(("final", e.decided_at, e.decided_at))
            continue
        speaking_since = None
        if early is not None and early.sample == e.sample:
            ends.append((e, early.decided_at))
        else:
            out.append(("final", e.decided_at, e.decided_at))
            ends.append((e, e.decided_at))
        early = None
    return out, ends


def next_tick(sample: int) -> int:
    """The first policy tick at or after ``sample`` (ticks fall at 800k + 160)."""
    k = max(0, -(-(sample - FRAME) // TICK))
    return k * TICK + FRAME


PolicyFn = Callable[[float, str, Any], bool]  # (pause_ms, text, prosody) -> commit


def policy_decision(trace: Trace, commit: PolicyFn, on_arrival: bool = True) -> int | None:
    """The sample at which the policy ended the turn, or None if it never did.

    The policy runs when the transcript arrives (``on_arrival``) and then on every tick.
    """
    for pause in trace.pauses:
        for t in policy_moments(trace, pause, on_arrival):
            pause_ms = (t - pause.speech_end) * 1000.0 / PROCESSING_RATE
            if commit(pause_ms, pause.text, pause.prosody):
                return t
    return None


def policy_moments(trace: Trace, pause: Pause, on_arrival: bool = True) -> list[int]:
    """The samples at which the policy is asked about ``pause``: when its transcript arrives
    (or the tick after), then every tick until the user resumes or the audio ends."""
    if pause.ready_at is None:
        return []
    moments = []
    t = pause.ready_at if on_arrival else next_tick(pause.ready_at)
    while (pause.resumed_at is None or t < pause.resumed_at) and t < trace.item.audio.size:
        moments.append(t)
        t = next_tick(t + 1)
    return moments


def timeout_decision(trace: Trace, timeout_s: float) -> int | None:
    """The sample at which a fixed silence timeout ended the turn, or None."""
    for pause in trace.pauses:
        t = next_tick(max(pause.decided_at, pause.speech_end + int(timeout_s * PROCESSING_RATE)))
        if (pause.resumed_at is None or t < pause.resumed_at) and t < trace.item.audio.size:
            return t
    return None


@dataclass(frozen=True, slots=True)
class Score:
    """How an end-of-turn rule did on a set of traces."""

    premature_pct: float  # paused turns cut during a mid-turn pause
    complete_cut_pct: float  # complete turns ended before their true end
    delay_median_ms: float  # true end of speech -> end of turn, complete turns
    delay_p95_ms: float
    paused_delay_median_ms: float  # the same on paused turns that were not cut
    undecided: int  # turns never ended before the audio ran out (counted at the audio's end)
    n_complete: int
    n_paused: int

    def as_json(self) -> dict[str, float | None]:
        """Rounded values; ``None`` where there was nothing to measure."""
        values = {k: float(getattr(self, k)) for k in self.__slots__}
        return {k: round(v, 1) if math.isfinite(v) else None for k, v in values.items()}


def score(traces: list[Trace], decide: Callable[[Trace], int | None]) -> Score:
    """Premature cuts on paused turns and delays on complete ones for one rule."""
    cut_paused = cut_complete = undecided = 0
    delays: list[float] = []
    paused_delays: list[float] = []
    n_complete = sum(t.item.kind == "complete" for t in traces)
    for trace in traces:
        at = decide(trace)
        if at is None:
            undecided += 1
            at = trace.item.audio.size
        delay_ms = (at - trace.true_end) * 1000.0 / PROCESSING_RATE
        if trace.item.kind != "complete":
            if delay_ms < 0:
                cut_paused += 1
            else:
                paused_delays.append(delay_ms)
        elif delay_ms < 0:
            cut_complete += 1
        else:
            delays.append(delay_ms)
    n_paused = len(traces) - n_complete

    def pct(k: int, n: int) -> float:
        return 100.0 * k / n if n else 0.0

    def q(values: list[float], p: float) -> float:
        return float(np.percentile(values, p)) if values else float("nan")

    return Score(pct(cut_paused, n_paused), pct(cut_complete, n_complete), q(delays, 50),
                 q(delays, 95), q(paused_delays, 50), undecided, n_complete, n_paused)
