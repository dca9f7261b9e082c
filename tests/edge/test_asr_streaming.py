"""Contract test of the streaming adapter with a tiny zipformer2 transducer built here.

The three ONNX graphs have the inputs, outputs, state shapes and metadata that sherpa-onnx's
online zipformer2 loader reads (one encoder stack of one layer, 8 wide); their weights are
random. The test proves the wiring (load, accept audio, partials, endpoints, final, reset,
the CLI), not accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.asr import StreamingRecognizer
from edge.asr.streaming import StreamingAsOffline, ZipformerStreamingRecognizer, words_from_tokens
from shared.audio import PROCESSING_RATE

DIM, KEY, VALUE, LEFT, KERNEL = 8, 4, 4, 4, 3
T, CHUNK, FRAMES_OUT = 39, 32, 16
JOINER, CONTEXT = 16, 2
TOKENS = ["<blk>", "\u2581hello", "\u2581world", "\u2581yes", "s", "\u2581no", "ing", "\u2581a"]
EMBED = ((80 - 1) // 2 - 1) // 2
STATES = [  # name, shape (batch 1), dtype, batch axis
    ("cached_key_0", [LEFT, 1, KEY], TensorProto.FLOAT),
    ("cached_nonlin_attn_0", [1, 1, LEFT, 3 * DIM // 4], TensorProto.FLOAT),
    ("cached_val1_0", [LEFT, 1, VALUE], TensorProto.FLOAT),
    ("cached_val2_0", [LEFT, 1, VALUE], TensorProto.FLOAT),
    ("cached_conv1_0", [1, DIM, KERNEL // 2], TensorProto.FLOAT),
    ("cached_conv2_0", [1, DIM, KERNEL // 2], TensorProto.FLOAT),
    ("embed_states", [1, 128, 3, EMBED], TensorProto.FLOAT),
    ("processed_lens", [1], TensorProto.INT64),
]


def _save(graph: onnx.GraphProto, path: Path, meta: dict[str, str]) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _encoder(path: Path, rng: np.random.Generator) -> None:
    """x (N, T, 80) -> every other of the first 32 frames, projected; states pass through.

    Output channel 0 is the mean log-mel energy plus 8 (negative for digital silence, about
    -16 before the shift), so the joiner can tell silence from sound.
    """
    w = rng.standard_normal((80, JOINER)) * 0.005
    w[:, 0] = 1.0 / 80
    bias = np.zeros(JOINER)
    bias[0] = 8.0
    consts = [numpy_helper.from_array(np.array(v, dtype=np.int64), n) for n, v in
              [("starts", [0]), ("ends", [2 * FRAMES_OUT]), ("axes", [1]), ("steps", [2]),
               ("chunk", [CHUNK])]]
    nodes = [helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["picked"]),
             helper.make_node("MatMul", ["picked", "w"], ["projected"]),
             helper.make_node("Add", ["projected", "bias"], ["encoder_out"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", T, 80])]
    outputs = [helper.make_tensor_value_info("encoder_out", TensorProto.FLOAT,
                                             ["N", FRAMES_OUT, JOINER])]
    for name, shape, dtype in STATES:
        dims: list[int | str] = list(shape)
        dims[0 if name.startswith(("cached_conv", "embed", "processed")) else 1] = "N"
        inputs.append(helper.make_tensor_value_info(name, dtype, dims))
        outputs.append(helper.make_tensor_value_info(f"new_{name}", dtype, dims))
        op = ("Add", [name, "chunk"]) if name == "processed_lens" else ("Identity", [name])
        nodes.append(helper.make_node(op[0], op[1], [f"new_{name}"]))
    weights = [numpy_helper.from_array(w.astype(np.float32), "w"),
               numpy_helper.from_array(bias.astype(np.float32), "bias")]
    graph = helper.make_graph(nodes, "encoder", inputs, outputs, [*weights, *consts])
    _save(graph, path, {
        "model_type": "zipformer2", "version": "1", "encoder_dims": str(DIM),
        "query_head_dims": str(KEY), "value_head_dims": str(VALUE), "num_heads": "1",
        "num_encoder_layers": "1", "cnn_module_kernels": str(KERNEL),
        "left_context_len": str(LEFT), "T": str(T), "decode_chunk_len": str(CHUNK),
    })


def _decoder(path: Path, rng: np.random.Generator) -> None:
    """y (N, context) token ids -> mean of their embeddings (N, joiner); channel 0 stays 0."""
    embeddings = rng.standard_normal((len(TOKENS), JOINER))
    embeddings[:, 0] = 0.0
    table = numpy_helper.from_array(embeddings.astype(np.float32), "table")
    nodes = [helper.make_node("Gather", ["table", "y"], ["embedded"]),
             helper.make_node("ReduceMean", ["embedded"], ["decoder_out"], axes=[1],
                              keepdims=0)]
    graph = helper.make_graph(
        nodes, "decoder", [helper.make_tensor_value_info("y", TensorProto.INT64, ["N", CONTEXT])],
        [helper.make_tensor_value_info("decoder_out", TensorProto.FLOAT, ["N", JOINER])], [table])
    _save(graph, path, {"vocab_size": str(len(TOKENS)), "context_size": str(CONTEXT)})


def _joiner(path: Path, rng: np.random.Generator) -> None:
    """(encoder_out + decoder_out) @ W -> logits; blank wins where the energy is low."""
    w = rng.standard_normal((JOINER, len(TOKENS)))
    w[0, :] = 0.0
    w[0, 0] = -2.0
    weight = numpy_helper.from_array(w.astype(np.float32), "w")
    nodes = [helper.make_node("Add", ["encoder_out", "decoder_out"], ["hidden"]),
             helper.make_node("MatMul", ["hidden", "w"], ["logit"])]
    graph = helper.make_graph(
        nodes, "joiner",
        [helper.make_tensor_value_info("encoder_out", TensorProto.FLOAT, ["N", JOINER]),
         helper.make_tensor_value_info("decoder_out", TensorProto.FLOAT, ["N", JOINER])],
        [helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["N", len(TOKENS)])], [weight])
    _save(graph, path, {})


@pytest.fixture(scope="module")
def tiny_transducer(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tiny-zipformer")
    rng = np.random.default_rng(7)
    files = {role: folder / f"{role}.onnx" for role in ("encoder", "decoder", "joiner")}
    _encoder(files["encoder"], rng)
    _decoder(files["decoder"], rng)
    _joiner(files["joiner"], rng)
    files["tokens"] = folder / "tokens.txt"
    files["tokens"].write_text("".join(f"{t} {i}\n" for i, t in enumerate(TOKENS)),
                               encoding="utf-8")
    return files


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * PROCESSING_RATE)) / PROCESSING_RATE
    tone = np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return (0.3 * tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def test_the_adapter_loads_a_zipformer2_transducer_and_streams(
        tiny_transducer: dict[str, Path]) -> None:
    recognizer = ZipformerStreamingRecognizer(tiny_transducer)
    assert isinstance(recognizer, StreamingRecognizer)
    partials = []
    audio = _speechlike(2.0)
    for start in range(0, audio.size, 1600):
        recognizer.accept_waveform(audio[start:start + 1600])
        partials.append(recognizer.partial_text())
    final = recognizer.final()
    assert final.engine == recognizer.engine
    assert final.compute_s > 0
    words = final.text.split()
    assert words, "random weights still emit tokens"
    assert all(w.replace("\u2581", "") for w in words)
    assert len(final.words) == len(words)
    assert all(a.start_s <= b.start_s for a, b in zip(final.words, final.words[1:], strict=False))
    assert partials[-1] and final.text.startswith(partials[-1][:5])


def test_endpointing_fires_on_trailing_silence_and_reset_starts_over(
        tiny_transducer: dict[str, Path]) -> None:
    recognizer = ZipformerStreamingRecognizer(tiny_transducer)
    recognizer.accept_waveform(np.zeros(int(3.0 * PROCESSING_RATE), np.float32))
    assert recognizer.endpoint_detected()
    recognizer.reset()
    assert not recognizer.endpoint_detected()
    assert recognizer.partial_text() == ""


def test_empty_and_tiny_pushes_are_harmless(tiny_transducer: dict[str, Path]) -> None:
    recognizer = ZipformerStreamingRecognizer(tiny_transducer)
    recognizer.accept_waveform(np.zeros(0, np.float32))
    recognizer.accept_waveform(np.zeros(10, np.float32))
    assert isinstance(recognizer.final().text, str)


def test_the_offline_view_transcribes_a_whole_buffer(tiny_transducer: dict[str, Path]) -> None:
    offline = StreamingAsOffline(ZipformerStreamingRecognizer(tiny_transducer))
    first = offline.transcribe(_speechlike(1.5, seed=1))
    again = offline.transcribe(_speechlike(1.5, seed=1))
    assert first.text == again.text  # each call starts from a fresh utterance


def test_words_are_joined_from_bpe_tokens() -> None:
    words = words_from_tokens(["\u2581hel", "lo", "\u2581world"], [0.1, 0.2, 0.5], 0.9)
    assert [(w.word, w.start_s, w.end_s) for w in words] == [("hello", 0.1, 0.5),
                                                             ("world", 0.5, 0.9)]


def test_the_cli_runs_the_streaming_engine_from_the_models_dir(
        tiny_transducer: dict[str, Path], tmp_path: Path) -> None:
    """``--engine streaming`` finds a fetched transducer through the registry."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    from models import registry
    from shared.audio import write_wav

    name = "zipformer-en-streaming"
    folder = tmp_path / "models" / name
    folder.mkdir(parents=True)
    for role, filename in registry.spec(name).files.items():
        shutil.copy(tiny_transducer[role], folder / filename)
    (folder / registry.STAMP).write_text("{}")
    wav = tmp_path / "speech.wav"
    write_wav(wav, np.concatenate([_speechlike(1.0), np.zeros(PROCESSING_RATE, np.float32)]))
    env = {**os.environ, "PARLEY_MODELS_DIR": str(tmp_path / "models")}
    proc = subprocess.run([sys.executable, "-m", "shared.cli", "asr", "transcribe", str(wav),
                           "--engine", "streaming", "--json"], capture_output=True, text=True,
                          timeout=120, check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["engine"] == f"sherpa-onnx/{name}"
    assert result["audio_s"] == pytest.approx(2.0)
    assert isinstance(result["text"], str)
