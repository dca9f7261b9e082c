"""``parley tts say``: the JSON a script reads, the WAV it writes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from models import registry
from shared.audio import wav_info


def parley(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shared.cli", *args], capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def voice_built() -> None:
    spec = registry.default_spec("tts")
    if not registry.status(spec).ready:
        from models.build import build_all

        build_all([spec.name], progress=lambda _: None)


def test_say_writes_a_wav_and_prints_the_timing_json(voice_built: None, tmp_path: Path) -> None:
    out = tmp_path / "reply.wav"
    proc = parley("tts", "say", "The museum opens at nine.", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report) == {"audio_s", "compute_s", "first_audio_ms", "sample_rate"}
    info = wav_info(out)
    assert report["sample_rate"] == info.sample_rate == 22050
    assert info.channels == 1
    assert report["audio_s"] == pytest.approx(info.seconds, abs=0.01)
    assert 1.0 < report["audio_s"] < 4.0
    assert 0 < report["first_audio_ms"] <= report["compute_s"] * 1000 + 1


@pytest.mark.parametrize(("args", "message"), [
    (["", "--out", "{tmp}/a.wav"], "empty"),
    (["😀 🎉", "--out", "{tmp}/a.wav"], "no speakable words"),
    (["hello", "--out", "/proc/no/such/dir/a.wav"], "cannot write"),
    (["hello", "--out", "{tmp}"], ".wav"),
    (["hello", "--out", "{tmp}/a.mp3"], ".wav"),
    (["word " * 1000, "--out", "{tmp}/a.wav"], "at most"),
    (["hello", "--out", "{tmp}/a.wav", "--speed", "0"], "speed"),
])
def test_bad_input_is_one_line_without_a_traceback(
    voice_built: None, tmp_path: Path, args: list[str], message: str
) -> None:
    proc = parley("tts", "say", *[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("parley: error:")
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "a.wav").exists()
