"""``parley bench aec`` prints the room-echo figures as one JSON object."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from edge.aec import bench
from edge.aec.bench import bench_app
from edge.aec.erle import ErleReport, NearEndLoss
from edge.aec.evaluate import SceneResult, spoken, summarize


def test_bench_prints_erle_delay_double_talk_and_cost_per_implementation() -> None:
    result = CliRunner().invoke(bench_app, ["--json", "--seeds", "1", "--only", "numpy",
                                            "--far-voice", "espeak", "--no-vad", "--no-asr"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    numpy_summary = report["implementations"]["numpy"]
    assert numpy_summary["erle_whole_db"]["median"] >= 25.0
    assert numpy_summary["delay_error_ms"]["worst"] < 10.0
    assert numpy_summary["ms_per_frame"] > 0
    assert {"double_talk_loss_db", "double_talk_eaten", "near_only_loss_db"} <= set(numpy_summary)
    assert report["acceptance"]["numpy"]["erle_whole_median_ge_25"] is True


def test_bench_reports_pooled_wer_with_intervals_and_keeps_per_seed_transcripts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in recognizer: hears "yes" in anything, so every condition scores the same.
    monkeypatch.setattr(bench, "_transcriber", lambda: lambda audio: "Yes.")
    result = CliRunner().invoke(bench_app, ["--json", "--seeds", "1", "--only", "numpy",
                                            "--far-voice", "espeak", "--no-vad"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    summary, (scene,) = report["implementations"]["numpy"], report["scenes"]["numpy"]
    assert summary["utterances"] == len(scene["said"]) == 2
    assert set(summary["wer"]) == {"aec", "aec_streamed", "aec_warm", "aec_restart", "mic",
                                   "alone", "echo_words", "restart_echo_words"}
    assert summary["wer"]["echo_words"] == 1.0  # "yes" in the far-end-only output
    assert summary["wer"]["restart_echo_words"] == 1.0  # ... and before the user, restarted
    assert set(summary["wer_minus_alone"]) == {"aec", "aec_streamed", "aec_warm",
                                               "aec_restart", "mic"}
    assert summary["wer_minus_alone"]["aec"] == {"difference": 0.0, "p5": 0.0, "p95": 0.0}
    assert scene["heard"]["aec_warm"] == ["Yes.", "Yes."]
    assert set(scene["wer"]) == set(summary["wer"])


def _result(seed: int, said: tuple[str, ...], heard: dict[str, tuple[str, ...]]) -> SceneResult:
    loss = NearEndLoss(0.0, 0.0, 0.0, 0.0)
    return SceneResult(seed=seed, delay_ms=50.0, rt60_s=0.3, erle=ErleReport(30.0, 30.0, 30.0),
                       double_talk_erle_db=20.0, delay_error_ms=0.0, double_talk=loss,
                       double_talk_warm=loss, near_only=loss, ms_per_frame=0.1,
                       said=said, heard=heard)


def test_word_error_rates_are_pooled_over_utterances_with_a_paired_interval() -> None:
    long = "one two three four five six seven eight nine ten"
    results = [
        # 10 reference words, the echo costs 5 of them; alone 1 error.
        _result(0, (long,), {"aec": ("one two three four five",), "alone": (long[4:],)}),
        # 2 words, both lost with echo (a per-seed mean would weigh this seed like the first).
        _result(1, ("hello there",), {"aec": ("",), "alone": ("hello there",)}),
        _result(2, ("good morning",), {"aec": ("good morning",), "alone": ("good morning",)}),
    ]
    s = summarize("numpy", results)
    assert s.utterances == 3
    assert s.wer["aec"] == pytest.approx(7 / 14)  # not the mean of 0.5, 1.0, 0.0
    assert s.wer["alone"] == pytest.approx(1 / 14)
    low, high = s.wer_minus_alone["aec"]
    assert 0.0 <= low <= 6 / 14 <= high <= 1.0
    assert "alone" not in s.wer_minus_alone
    # Against what the user alone was heard as: 6 errors on 9 words ("one" added, "six" to
    # "ten" missing), 2 on 2, 0 on 2.
    assert s.wer_vs_alone == {"aec": pytest.approx(8 / 13)}
    assert summarize("numpy", results).wer_minus_alone == s.wer_minus_alone  # fixed seed


def test_without_a_recognizer_there_are_no_word_error_rates() -> None:
    s = summarize("numpy", [_result(0, (), {})])
    assert s.wer == s.wer_minus_alone == s.wer_vs_alone == {} and s.utterances == 0


def test_bench_refuses_unknown_implementations() -> None:
    result = CliRunner().invoke(bench_app, ["--only", "speex", "--no-vad", "--no-asr"])
    assert result.exit_code != 0


def test_bench_runs_long_rooms_with_clock_drift_and_refuses_absurd_ones() -> None:
    result = CliRunner().invoke(bench_app, ["--json", "--seeds", "1", "--only", "numpy",
                                            "--far-voice", "espeak", "--no-vad", "--no-asr",
                                            "--drift-ppm", "100", "--rt60-s", "0.9"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["drift_ppm"] == 100.0 and report["rt60_s"] == 0.9
    assert report["scenes"]["numpy"][0]["rt60_s"] == 0.9
    assert report["implementations"]["numpy"]["erle_whole_db"]["median"] >= 25.0
    refused = CliRunner().invoke(bench_app, ["--drift-ppm", "5000", "--no-vad", "--no-asr"])
    assert refused.exit_code != 0 and "drift" in str(refused.exception or refused.output)
    refused = CliRunner().invoke(bench_app, ["--rt60-s", "30", "--no-vad", "--no-asr"])
    assert refused.exit_code != 0


def test_whisper_annotations_are_not_words() -> None:
    assert spoken("[ Inaudible ]") == ""
    assert spoken("Turn it (music) down.") == "Turn it down."
    assert spoken("[ Inaud [ Inaud") == "" and spoken(">> >>") == "" and spoken("(mus") == ""
    assert spoken(">> I think [ Inaud") == "I think"

