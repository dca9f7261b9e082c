"""Fit the end-of-turn model on the training half of the evaluation set; write ``model.json``.

    python -m edge.endpointing.train [--known-text] [--out PATH] [--thresholds-only]

(``--thresholds-only`` keeps the weights of the model at ``--out`` and chooses its thresholds
again: the shipped model's weights are from the fit of 2026-11-25; a full refit on today's
transcripts scores the same on the test split but trusts long questions less, and left the
demo's "Hello? What time do you close today?" waiting 0.85 s.)

Deterministic: the set is synthesized from a fixed seed, the VAD and the recognizer are
deterministic, and the decode timing used to replay the policy is a fixed assumption
(``TRAIN_ASR_COST``, about this machine's measured speed), not a measurement. Each pause the
VAD reported is one example (its transcript and prosody): label 1 when the turn had truly
ended before it, 0 for a mid-turn pause. A logistic regression (L2, Newton steps) is fitted
on standardized features; the lengths of the mid-turn pauses give the survival curve
S(pause) (see ``detector.py``). The operating point is chosen on the same training traces:
the text and end thresholds together, with the lowest median delay whose premature-cut rate
stays under ``TARGET_PREMATURE_PCT``; then the speculative threshold, the lowest one whose
early finals are wrong on at most ``TARGET_WRONG_SPECULATION_PCT`` of the paused turns. The
L2 strength is picked from ``L2_CHOICES`` by that same training score: which fit gives the
best operating point is not what gives the best log-loss (how sure the model is of its most
confident endings matters, not its average calibration).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import typer

from edge.endpointing.detector import MODEL_PATH, EndOfTurnDetector, EndpointModel
from edge.endpointing.eval_set import SET_VERSION, EvalItem, load_set
from edge.endpointing.features import FEATURE_NAMES, feature_vector
from edge.endpointing.simulate import (
    CostModel,
    Pause,
    Score,
    Trace,
    TranscriptSource,
    VadReplay,
    policy_moments,
    score,
    trace_item,
)
from shared.audio import PROCESSING_RATE

TRAIN_SIZE = (200, 200)  # complete, paused
SEED = 0
L2_CHOICES = (0.3, 1.0, 3.0, 10.0, 30.0)
MAX_PAUSE_MS = 1200.0
MIN_PAUSE_MS = 150.0  # shorter silences are gaps inside words, never judged
SURVIVAL_UNTIL_MS = 2000.0
TARGET_PREMATURE_PCT = 3.0
TARGET_WRONG_SPECULATION_PCT = 25.0
TRAIN_ASR_COST = CostModel(fixed=0.06, per_second=0.033)  # an assumption, see the docstring
PROSODY_COST = CostModel(fixed=0.0, per_second=0.01)

Matrix = npt.NDArray[np.float64]


def examples(traces: list[Trace]) -> tuple[Matrix, Matrix]:
    """One row per pause the detector may judge (the end of the turn, or a mid-turn pause of
    at least ``MIN_PAUSE_MS``): the features of its text and prosody, and 1 for the end."""
    rows: list[Matrix] = []
    labels: list[float] = []
    for trace in traces:
        for pause in trace.pauses:
            if pause.final or _length_ms(pause, trace) >= MIN_PAUSE_MS:
                rows.append(feature_vector(pause.text, pause.prosody))
                labels.append(float(pause.final))
    return np.vstack(rows), np.asarray(labels)


def survival(traces: list[Trace]) -> tuple[Matrix, Matrix]:
    """S(p): the share of mid-turn pauses (of at least ``MIN_PAUSE_MS``) still silent after p
    ms, on a 50 ms grid, with add-one smoothing so that it never reaches 0."""
    lengths = np.asarray([_length_ms(p, t) for t in traces for p in t.pauses
                          if not p.final and _length_ms(p, t) >= MIN_PAUSE_MS])
    grid = np.arange(0.0, SURVIVAL_UNTIL_MS + 1.0, 50.0)
    longer = (lengths[None, :] > grid[:, None]).sum(axis=1)
    return grid, (longer + 1.0) / (lengths.size + 1.0)


def _length_ms(pause: Pause, trace: Trace) -> float:
    end = pause.resumed_at if pause.resumed_at is not None else trace.item.audio.size
    return (end - pause.speech_end) * 1000.0 / PROCESSING_RATE


def fit_logistic(x: Matrix, y: Matrix, l2: float = 1.0,
                 steps: int = 50) -> tuple[Matrix, Matrix, Matrix, float]:
    """Standardize, then Newton's method on the L2-penalized log-loss (bias unpenalized)."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = np.hstack([(x - mean) / scale, np.ones((x.shape[0], 1))])
    w = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2)
    penalty[-1] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -50, 50)))
        grad = z.T @ (p - y) + penalty * w
        hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return mean, scale, w[:-1], float(w[-1])


def choose_thresholds(traces: list[Trace], model: EndpointModel) -> dict[str, Any]:
    """The text, end and speculative thresholds on the training traces."""
    pauses = _judgeable(traces, EndOfTurnDetector(model))
    grid = [round(v, 3) for v in np.arange(0.30, 0.991, 0.01)]
    rows = {(t, e): _replayed_score(traces, pauses, t, e) for t in [*grid, 1.0] for e in grid}
    feasible = [k for k, s in rows.items() if s.premature_pct <= TARGET_PREMATURE_PCT]
    text, end = min(feasible, key=lambda k: _rank(rows[k], k)) if feasible else (1.0, grid[-1])
    spec_rows = {s: _replayed_score(traces, pauses, text, end, speculate=s)
                 for s in grid if s <= end}
    spec_ok = [s for s, row in spec_rows.items()
               if row.premature_pct <= TARGET_WRONG_SPECULATION_PCT]
    speculative = min(spec_ok) if spec_ok else end
    return {"text_threshold": text, "end_threshold": end, "speculative_threshold": speculative,
            "train_score": rows[(text, end)].as_json(),
            "train_speculative_score": spec_rows[speculative].as_json(),
            "rank": _rank(rows[(text, end)], (text, end))}


def _rank(s: Score, thresholds: tuple[float, float]) -> tuple[float, ...]:
    """Lowest median delay first; then the shorter long waits, fewer cuts, and the more
    cautious thresholds."""
    return (round(s.delay_median_ms), round(s.delay_p95_ms), s.premature_pct,
            -thresholds[0], -thresholds[1])


@dataclass(frozen=True, slots=True)
class _Judged:
    """One pause as the policy sees it: the moments it is asked (samples), the pause so far
    then, and the words-and-voice log-odds."""

    times: npt.NDArray[np.int64]
    neg_log_survival: npt.NDArray[np.float64]  # -log S(pause) at each moment (ascending)
    first_at_max: int  # index of the first moment at the hard maximum pause (or len)
    text_logit: float


def _judgeable(traces: list[Trace], detector: EndOfTurnDetector) -> dict[int, list[_Judged]]:
    """The moments ``policy_decision`` asks the policy, per trace, computed once."""
    out: dict[int, list[_Judged]] = {}
    for trace in traces:
        judged = []
        for pause in trace.pauses:
            times = policy_moments(trace, pause)
            if not times:
                continue
            pause_ms = (np.asarray(times) - pause.speech_end) * 1000.0 / PROCESSING_RATE
            neg = np.asarray([-detector.model.log_survival(float(ms)) for ms in pause_ms])
            judged.append(_Judged(np.asarray(times, dtype=np.int64), np.maximum.accumulate(neg),
                                  int(np.searchsorted(pause_ms, MAX_PAUSE_MS)),
                                  detector.text_logit(pause.text, pause.prosody)))
        out[id(trace)] = judged
    return out


def _replayed_score(traces: list[Trace], pauses: dict[int, list[_Judged]], text: float,
                    end: float, speculate: float | None = None) -> Score:
    """``score`` of the policy with these thresholds (``speculate``: of its early finals)."""
    text_z = _logit(text)
    pause_z = _logit(end if speculate is None else speculate)

    def decide(trace: Trace) -> int | None:
        for j in pauses[id(trace)]:
            if j.text_logit >= text_z:
                return int(j.times[0])
            k = min(j.first_at_max,
                    int(np.searchsorted(j.neg_log_survival, pause_z - j.text_logit)))
            if k < j.times.size:
                return int(j.times[k])
        return None

    return score(traces, decide)


def _logit(p: float) -> float:
    return math.inf if p >= 1.0 else math.log(p / (1.0 - p))


def train(source: TranscriptSource, source_name: str,
          items: list[EvalItem] | None = None) -> EndpointModel:
    """Fit the model and its operating point on the training split."""
    return fit_model(training_traces(source, items), {"transcripts": source_name})


def refit_thresholds(model: EndpointModel, source: TranscriptSource, source_name: str,
                     items: list[EvalItem] | None = None) -> EndpointModel:
    """``model``'s weights and survival curve with its thresholds chosen again on the
    training split (as ``fit_model`` chooses them)."""
    chosen = choose_thresholds(training_traces(source, items), model)
    return _with_thresholds(model, chosen, {
        "thresholds_refitted_on": source_name,
        "asr_cost_assumed_for_thresholds": [TRAIN_ASR_COST.fixed, TRAIN_ASR_COST.per_second]})


def _with_thresholds(model: EndpointModel, chosen: dict[str, Any],
                     info: dict[str, Any]) -> EndpointModel:
    """``model`` at the operating point ``choose_thresholds`` picked, its training scores
    added to the model's info (after ``info``)."""
    return replace(model, text_threshold=chosen["text_threshold"],
                   end_threshold=chosen["end_threshold"],
                   speculative_threshold=chosen["speculative_threshold"],
                   info={**model.info, **info,
                         **{k: v for k, v in chosen.items() if k.startswith("train")}})


def training_traces(source: TranscriptSource,
                    items: list[EvalItem] | None = None) -> list[Trace]:
    """The training split replayed as the edge runs it (``TRAIN_ASR_COST`` decodes)."""
    from edge.endpointing.bench import ENDPOINT_VAD
    from edge.vad import SileroVad

    items = items if items is not None else load_set("train", *TRAIN_SIZE, seed=SEED)
    replay = VadReplay(SileroVad(ENDPOINT_VAD))
    return [trace_item(it, replay.events(it), source, TRAIN_ASR_COST, PROSODY_COST,
                       judged_from_ms=MIN_PAUSE_MS) for it in items]


def fit_model(traces: list[Trace], info: dict[str, Any]) -> EndpointModel:
    """The logistic model and its thresholds from replayed training traces; the L2 strength
    whose operating point scores best on them."""
    x, y = examples(traces)
    grid, surv = survival(traces)
    best: tuple[tuple[float, ...], EndpointModel] | None = None
    for l2 in L2_CHOICES:
        mean, scale, weights, bias = fit_logistic(x, y, l2)
        model = EndpointModel(FEATURE_NAMES, mean, scale, weights, bias, grid, surv, 1.0, 0.5,
                              0.5, MAX_PAUSE_MS, {})
        chosen = choose_thresholds(traces, model)
        candidate = _with_thresholds(model, chosen, {
            "set_version": SET_VERSION, "train_size": list(TRAIN_SIZE), "seed": SEED, **info,
            "examples": int(y.size), "positives": int(y.sum()), "l2": l2,
            "asr_cost_assumed": [TRAIN_ASR_COST.fixed, TRAIN_ASR_COST.per_second]})
        if best is None or chosen["rank"] < best[0]:
            best = (chosen["rank"], candidate)
    assert best is not None
    return best[1]


def main(
    known_text: Annotated[bool, typer.Option(
        help="Use the known words instead of the recognizer (development only).")] = False,
    out: Annotated[Path, typer.Option(help="Where to write the model.")] = MODEL_PATH,
    thresholds_only: Annotated[bool, typer.Option(
        help="Keep the weights of the model at --out; choose only its thresholds again.")
    ] = False,
) -> None:
    """Fit the end-of-turn model and write it as JSON."""
    import json

    from edge.endpointing.bench import transcript_source

    source, name = transcript_source(known_text)
    model = (refit_thresholds(EndpointModel.load(out), source, name) if thresholds_only
             else train(source, name))
    if hasattr(source, "save"):
        source.save()
    out.write_text(json.dumps(model.to_json(), indent=1) + "\n", encoding="utf-8")
    weights = dict(zip(FEATURE_NAMES, np.round(model.weights, 3), strict=True))
    typer.echo(json.dumps({"out": str(out), "weights": {k: float(v) for k, v in
                                                         weights.items()},
                           **{k: v for k, v in model.to_json().items()
                              if k.endswith("threshold")}, "info": model.info}, indent=1))


if __name__ == "__main__":
    from shared.cli import run_reporting

    run_reporting(lambda: typer.run(main), "edge.endpointing.train")
