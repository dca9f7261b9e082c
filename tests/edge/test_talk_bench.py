"""``parley bench talk``: the user over the agent through the whole edge pipeline, scored
against the same user without the echo."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from edge.talk_bench import bench_app

pytestmark = pytest.mark.usefixtures("built_models")


def test_an_early_talker_is_heard_through_the_pipeline_and_scored_against_the_user_alone(
        ) -> None:
    # Room 2 with the user 0.3 s into the first reply: the file goes through the real AEC,
    # VAD, turn-taking and Whisper as `edge process --far` runs them (the room learned from
    # the recording first) and as `--causal` does (the live agent from a cold start), the
    # user alone through the same, and the report holds the transcripts, the pooled WERs and
    # the intervals of the differences. Both ways hear the user's first words. In a fresh
    # process, as `parley bench talk` runs: eSpeak NG's audio depends on what the process
    # synthesized before (tests/fresh.py), and after the rest of the suite the live agent
    # once heard "I lost a night while he was" from a cold start in this room.
    done = subprocess.run([sys.executable, "-m", "shared.cli", "bench", "talk", "--json",
                           "--seeds", "1", "--first-seed", "2", "--user-at", "0.3",
                           "--far-voice", "espeak"], capture_output=True, text=True, check=False,
                          timeout=900)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["rooms"] == 1 and report["user_at_s"] == 0.3
    assert all(report["segments"][way] >= 1 for way in ("echo", "live", "calibrated"))
    assert report["segments"]["utterances"] == 2
    (room,) = report["per_room"]
    first_said = [w.lower() for w in room["said"].split()[:3]]
    for way in ("echo", "live", "calibrated"):
        assert room[way].lower().split()[:3] == first_said, room
        low, high = report[f"{way}_minus_alone_90"]
        assert low <= high
    assert set(report["wer"]) == {"echo", "live", "calibrated", "alone"}


def test_bad_arguments_are_one_clear_error() -> None:
    result = CliRunner().invoke(bench_app, ["--seeds", "0"])
    assert result.exit_code != 0
    assert "bad arguments" in str(result.exception)
