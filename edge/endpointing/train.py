"""Fit the end-of-turn model on the training half of the evaluation set; write ``model.json``.

    python -m edge.endpointing.train [--known-text] [--out PATH]

Deterministic: the set is synthesized from a fixed seed, the VAD and the recognizer are
deterministic, and the decode timing used to replay the policy is a fixed assumption
(``TRAIN_ASR_COST``), not a measurement. Each pause the VAD reported is one example (its
transcript and prosody): label 1 when the turn had truly ended before it, 0 for a mid-turn
pause. A logistic regression (L2, Newton steps) is fitted on standardized features; the
lengths of the mid-turn pauses give the survival curve S(pause) (see ``detector.py``); then
the operating point is chosen on the same training traces: the end threshold with the lowest
median delay whose premature-cut rate stays under ``TARGET_PREMATURE_PCT``, and the
speculative threshold, the lowest one whose early finals are wrong on at most
``TARGET_WRONG_SPECULATION_PCT`` of the paused turns.
"""

from __future__ import annotations

from collections.abc import Callable
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
    Trace,
    TranscriptSource,
    VadReplay,
    policy_decision,
    score,
    trace_item,
)
from shared.audio import PROCESSING_RATE

TRAIN_SIZE = (200, 200)  # complete, paused
SEED = 0
L2 = 1.0
MAX_PAUSE_MS = 1200.0
MIN_PAUSE_MS = 150.0  # shorter silences are gaps inside words, never judged
SURVIVAL_UNTIL_MS = 2000.0
TARGET_PREMATURE_PCT = 3.0
TARGET_WRONG_SPECULATION_PCT = 25.0
TRAIN_ASR_COST = CostModel(fixed=0.10, per_second=0.05)  # an assumption, see the docstring
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


def fit_logistic(x: Matrix, y: Matrix, l2: float = L2,
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
    """The end and speculative thresholds on the training traces."""
    detector = EndOfTurnDetector(model)
    grid = [round(v, 3) for v in np.arange(0.30, 0.991, 0.01)]
    rows = {}
    for thr in grid:
        rows[thr] = score(traces, _rule(detector, thr, MAX_PAUSE_MS))
    feasible = [t for t in grid if rows[t].premature_pct <= TARGET_PREMATURE_PCT]
    end = min(feasible, key=lambda t: (rows[t].delay_median_ms, -t)) if feasible else grid[-1]
    spec_ok = [t for t in grid if t <= end
               and rows[t].premature_pct <= TARGET_WRONG_SPECULATION_PCT]
    speculative = min(spec_ok) if spec_ok else end
    return {"end_threshold": end, "speculative_threshold": speculative,
            "train_score": rows[end].as_json(),
            "train_speculative_score": rows[speculative].as_json()}


def _rule(detector: EndOfTurnDetector, threshold: float,
          max_pause_ms: float) -> Callable[[Trace], int | None]:
    def commit(pause_ms: float, text: str, prosody: Any) -> bool:
        return (pause_ms >= max_pause_ms
                or detector.probability(pause_ms, text, prosody) >= threshold)

    return lambda trace: policy_decision(trace, commit)


def train(source: TranscriptSource, source_name: str,
          items: list[EvalItem] | None = None) -> EndpointModel:
    """Fit the model and its operating point on the training split."""
    from edge.endpointing.bench import ENDPOINT_VAD
    from edge.vad import SileroVad

    items = items if items is not None else load_set("train", *TRAIN_SIZE, seed=SEED)
    replay = VadReplay(SileroVad(ENDPOINT_VAD))
    traces = [trace_item(it, replay.events(it), source, TRAIN_ASR_COST, PROSODY_COST,
                         judged_from_ms=MIN_PAUSE_MS) for it in items]
    return fit_model(traces, {"transcripts": source_name})


def fit_model(traces: list[Trace], info: dict[str, Any]) -> EndpointModel:
    """The logistic model and its thresholds from replayed training traces."""
    x, y = examples(traces)
    mean, scale, weights, bias = fit_logistic(x, y)
    grid, surv = survival(traces)
    info = {
        "set_version": SET_VERSION, "train_size": list(TRAIN_SIZE), "seed": SEED, **info,
        "examples": int(y.size), "positives": int(y.sum()), "l2": L2,
        "asr_cost_assumed": [TRAIN_ASR_COST.fixed, TRAIN_ASR_COST.per_second],
    }
    model = EndpointModel(FEATURE_NAMES, mean, scale, weights, bias, grid, surv, 0.5, 0.5,
                          MAX_PAUSE_MS, info)
    chosen = choose_thresholds(traces, model)
    info.update({k: v for k, v in chosen.items() if k.startswith("train")})
    return EndpointModel(FEATURE_NAMES, mean, scale, weights, bias, grid, surv,
                         chosen["end_threshold"], chosen["speculative_threshold"], MAX_PAUSE_MS,
                         info)


def main(
    known_text: Annotated[bool, typer.Option(
        help="Use the known words instead of the recognizer (development only).")] = False,
    out: Annotated[Path, typer.Option(help="Where to write the model.")] = MODEL_PATH,
) -> None:
    """Fit the end-of-turn model and write it as JSON."""
    import json

    from edge.endpointing.bench import transcript_source

    source, name = transcript_source(known_text)
    model = train(source, name)
    if hasattr(source, "save"):
        source.save()
    out.write_text(json.dumps(model.to_json(), indent=1) + "\n", encoding="utf-8")
    weights = dict(zip(FEATURE_NAMES, np.round(model.weights, 3), strict=True))
    typer.echo(json.dumps({"out": str(out), "weights": {k: float(v) for k, v in
                                                         weights.items()},
                           **{k: v for k, v in model.to_json().items()
                              if k.endswith("threshold")}, "info": model.info}, indent=1))


if __name__ == "__main__":
    typer.run(main)
