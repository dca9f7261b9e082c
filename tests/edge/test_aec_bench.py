"""``parley bench aec`` prints the room-echo figures as one JSON object."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from edge.aec.bench import bench_app
from edge.aec.evaluate import spoken


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


def test_bench_refuses_unknown_implementations() -> None:
    result = CliRunner().invoke(bench_app, ["--only", "speex", "--no-vad", "--no-asr"])
    assert result.exit_code != 0


def test_whisper_annotations_are_not_words() -> None:
    assert spoken("[ Inaudible ]") == ""
    assert spoken("Turn it (music) down.") == "Turn it down."
