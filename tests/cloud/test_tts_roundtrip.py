"""TTS round trip: what the piper voice says, the edge's whisper must hear (WER <= 10%).

The sentences are the first ones of ``models.corpus.SENTENCES`` (taken in order, not picked
by result). The aggregate WER is printed; run with ``-s`` to see it and each miss.

Piper draws fresh noise on every call, so a sentence sounds a little different each time.
The 4-sentence command-line check (there to prove that the two commands and the 22.05 ->
16 kHz resampling fit together) bounds each sentence (at least half of it heard) and the WER
loosely (25%): one misheard word moves a 4-sentence WER by 5 points.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from models.corpus import SENTENCES, piper_utterance
from shared.text import corpus_word_error_rate

IN_PROCESS = SENTENCES[:24]
THROUGH_THE_CLI = SENTENCES[24:28]
MAX_WER = 0.10
CLI_MAX_WER, CLI_MAX_SENTENCE_WER = 0.25, 0.5  # each sentence: at least half of it


@pytest.fixture(scope="module")
def recognizer(built_models: None) -> Any:
    from edge.asr import load_recognizer

    return load_recognizer()


def report(label: str, pairs: list[tuple[str, str]]) -> float:
    wer = corpus_word_error_rate(pairs)
    print(f"\n{label}: WER {wer:.3f} over {len(pairs)} sentences")
    for ref, hyp in pairs:
        if corpus_word_error_rate([(ref, hyp)]) > 0:
            print(f"  said {ref!r}\n  hear {hyp!r}")
    return wer


@pytest.mark.slow
def test_the_recognizer_understands_the_voice(recognizer: Any) -> None:
    pairs = [(text, str(recognizer.transcribe(piper_utterance(text).audio).text))
             for text in IN_PROCESS]
    assert report("piper -> whisper (in process)", pairs) <= MAX_WER


def parley(*args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "shared.cli", *args], capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@pytest.mark.slow
def test_tts_say_then_asr_transcribe_on_the_command_line(
    built_models: None, tmp_path: Path
) -> None:
    pairs = []
    for i, text in enumerate(THROUGH_THE_CLI):
        wav = tmp_path / f"{i}.wav"
        parley("tts", "say", text, "--out", str(wav), "--json")  # 22.05 kHz: asr resamples
        pairs.append((text, str(parley("asr", "transcribe", str(wav), "--json")["text"])))
    assert report("parley tts say -> parley asr transcribe", pairs) <= CLI_MAX_WER
    for said, heard in pairs:
        assert corpus_word_error_rate([(said, heard)]) <= CLI_MAX_SENTENCE_WER, (said, heard)
