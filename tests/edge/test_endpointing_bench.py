"""The end-of-turn evaluation set, the training script and ``parley bench endpointing``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edge.endpointing import material
from edge.endpointing.eval_set import PAUSE_RANGE_S, build_set, load_set
from shared.audio import PROCESSING_RATE

_DIGEST = """
import hashlib
from edge.endpointing.eval_set import build_set
items = build_set("train", 2, 4, seed=5)
print(hashlib.sha256(b"".join(i.audio.tobytes() for i in items)).hexdigest())
"""


def test_a_set_built_in_a_fresh_process_is_the_same_every_time() -> None:
    runs = [subprocess.run([sys.executable, "-c", _DIGEST], capture_output=True, text=True,
                           check=True).stdout.strip() for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) == 64


def test_the_set_knows_its_speech_boundaries() -> None:
    items = build_set("test", 3, 8, seed=5)
    kinds = [i.kind for i in items]
    assert kinds[:3] == ["complete"] * 3
    assert set(kinds[3:]) == {"greeting", "filler", "conjunction", "list"}
    for item in items:
        level = np.abs(item.audio)
        for span in item.spans:
            assert level[span.start:span.end].max() > 0.01  # speech inside the span
        for start, end in item.pauses:
            seconds = (end - start) / PROCESSING_RATE
            assert PAUSE_RANGE_S[0] - 0.01 <= seconds <= PAUSE_RANGE_S[1] + 0.01
            assert level[start + 160:end - 160].max() < 0.01  # silence inside the pause
        assert item.kind == "complete" or item.pauses


def test_training_and_test_material_do_not_share_continuations() -> None:
    for lists in (material.COMPLETE, material.QUESTIONS):
        assert not set(lists["train"]) & set(lists["test"])
    train_tails = {t[-1] for t in material.HANGING["train"] + material.MID_FILLERS["train"]}
    test_tails = {t[-1] for t in material.HANGING["test"] + material.MID_FILLERS["test"]}
    assert len(test_tails - train_tails) >= len(test_tails) - 1  # one shared demo-like turn


def test_the_cached_set_is_the_built_set(tmp_path: Path) -> None:
    built = load_set("train", 2, 2, seed=3, cache_dir=tmp_path)
    cached = load_set("train", 2, 2, seed=3, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    for a, b in zip(built, cached, strict=True):
        assert a.spans == b.spans and np.allclose(a.audio, b.audio, atol=1 / 32768)


def test_training_is_deterministic() -> None:
    from edge.endpointing.train import train
    from edge.endpointing.transcripts import KnownTranscripts

    items = build_set("train", 4, 8, seed=1)
    first = train(KnownTranscripts(), "known words", items).to_json()
    second = train(KnownTranscripts(), "known words", items).to_json()
    assert first == second
    assert 0.0 < first["speculative_threshold"] <= first["end_threshold"] < 1.0
    assert 0.0 < first["text_threshold"] <= 1.0


def test_refitting_the_thresholds_keeps_the_weights() -> None:
    from edge.endpointing.detector import default_model
    from edge.endpointing.train import refit_thresholds
    from edge.endpointing.transcripts import KnownTranscripts

    shipped = default_model()
    refit = refit_thresholds(shipped, KnownTranscripts(), "known words",
                             build_set("train", 4, 8, seed=1))
    assert np.array_equal(refit.weights, shipped.weights) and refit.bias == shipped.bias
    assert 0.0 < refit.speculative_threshold <= refit.end_threshold < 1.0
    assert 0.0 < refit.text_threshold <= 1.0


def test_training_from_a_missing_model_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "edge.endpointing.train", "--known-text",
                             "--thresholds-only", "--out", str(tmp_path / "none.json")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and "python -m edge.endpointing.train" in (
        result.stderr)
    assert "Traceback" not in result.stderr


def test_the_training_grid_replays_the_policy_exactly() -> None:
    """Thresholds are chosen on a fast replay; it must end each turn when the policy does."""
    from edge.endpointing.bench import ENDPOINT_VAD, _policy_rule
    from edge.endpointing.detector import EndOfTurnDetector, EndOfTurnPolicy, EndpointConfig
    from edge.endpointing.simulate import CostModel, VadReplay, score, trace_item
    from edge.endpointing.train import _judgeable, _replayed_score
    from edge.endpointing.transcripts import KnownTranscripts
    from edge.vad import SileroVad

    replay = VadReplay(SileroVad(ENDPOINT_VAD))
    items = build_set("train", 4, 8, seed=2)
    traces = [trace_item(it, replay.events(it), KnownTranscripts(), CostModel(0.06, 0.033),
                         CostModel(0.0, 0.01)) for it in items]
    detector = EndOfTurnDetector()
    pauses = _judgeable(traces, detector)
    for text, end in [(1.0, 0.9), (0.7, 0.9), (0.5, 0.6), (0.9, 0.99)]:
        policy = EndOfTurnPolicy(detector, EndpointConfig(text_threshold=text,
                                                          end_threshold=end))
        fast = _replayed_score(traces, pauses, text, end).as_json()
        assert fast == score(traces, _policy_rule(policy)).as_json()


def test_bench_reports_the_detector_and_each_timeout_in_one_run() -> None:
    from edge.endpointing.bench import bench_app

    result = CliRunner().invoke(bench_app, ["--json", "--n-complete", "3", "--n-paused", "4",
                                            "--known-text"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert set(report["rules"]) == {"detector", "timeout_0.2s", "timeout_0.5s", "timeout_0.8s"}
    for rule in report["rules"].values():
        assert {"premature_pct", "delay_median_ms", "delay_p95_ms"} <= set(rule)
    assert report["rules"]["timeout_0.2s"]["delay_median_ms"] < report["rules"][
        "timeout_0.8s"]["delay_median_ms"]
    assert report["cost"]["detector_us_per_call"]["tick"] > 0
    slower = report["detector_with_slower_decode"]
    assert list(slower) == ["1.5x", "2.5x", "6x"]
    # the detector waits for the recognizer: a slower one can only end turns later
    medians = [report["rules"]["detector"]["delay_median_ms"],
               *(s["delay_median_ms"] for s in slower.values())]
    assert medians == sorted(medians)
    assert "passed" in report["acceptance"]


def test_bench_refuses_an_empty_set() -> None:
    from edge.endpointing.bench import bench_app

    result = CliRunner().invoke(bench_app, ["--n-complete", "0", "--known-text"])
    assert result.exit_code != 0


@pytest.mark.parametrize("bad", ["1", "a,b", "0.1,0.2,0.3"])
def test_bench_explains_a_bad_asr_cost(bad: str) -> None:
    from edge.endpointing.bench import _parse_cost
    from shared.errors import ConfigError

    with pytest.raises(ConfigError, match="FIXED,PER_SECOND"):
        _parse_cost(bad)


def test_the_vad_replay_stamps_events_from_each_items_start() -> None:
    from edge.endpointing.bench import ENDPOINT_VAD
    from edge.endpointing.simulate import VadReplay
    from edge.vad import SileroVad

    replay = VadReplay(SileroVad(ENDPOINT_VAD))
    for item in build_set("test", 2, 2, seed=9):
        events = replay.events(item)
        assert events, item.item_id
        first, last = events[0], events[-1]
        assert abs(first.sample - item.spans[0].start) < 0.15 * PROCESSING_RATE
        # The item's end counts the word's fading tail (35-40 dB under its peak, near the
        # noise floor); the VAD may end on the level up to two windows before it.
        assert -0.1 * PROCESSING_RATE < last.decided_at - item.speech_end < 0.3 * PROCESSING_RATE
