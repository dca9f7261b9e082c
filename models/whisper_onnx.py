"""Builder: Whisper tiny.en (CTranslate2, float16) -> the int8 ONNX layout sherpa-onnx loads.

``sherpa_onnx.OfflineRecognizer.from_whisper`` needs:

- an encoder ``mel (n_audio, n_mels, frames)`` -> ``n_layer_cross_k``, ``n_layer_cross_v``
  ``(n_layers, n_audio, ctx, width)``, carrying the model facts as metadata (``n_mels``,
  ``n_text_*``, ``n_vocab``, ``sot``, ``eot``, ``sot_sequence``, ``no_timestamps``...);
- a decoder ``tokens, in_n_layer_self_k_cache, in_n_layer_self_v_cache, n_layer_cross_k,
  n_layer_cross_v, offset`` -> ``logits, out_n_layer_self_k_cache, out_n_layer_self_v_cache``;
- a tokens file: one ``base64(token bytes) id`` line per ordinary BPE token.

The encoder's frame axis is dynamic (the positional embedding is sliced to the input), so
the runtime chooses how much tail padding to spend: 3000 frames reproduces the reference
30 s window, fewer frames cost proportionally less. The encoder stays float32 (its
activations do not survive int8 well and it is cheap on short input); the decoder, whose
per-token cost dominates a short utterance, gets int8 weights.

torch is imported inside ``build`` only (the ``build`` extra); nothing at run time needs it.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from models.ct2_reader import read_ct2
from shared.errors import ModelBuildError

BUILDER_VERSION = "1"
OPSET = 17
MODEL_NAME = "tiny.en"
ENCODER_FILE = f"{MODEL_NAME}-encoder.onnx"
DECODER_FILE = f"{MODEL_NAME}-decoder.int8.onnx"
TOKENS_FILE = f"{MODEL_NAME}-tokens.txt"

Progress = Callable[[str], None]


def build(inputs: dict[str, Path], out_dir: Path, progress: Progress) -> None:
    """Read ``model.bin`` + ``vocabulary.txt``, export, quantize, write the tokens file."""
    try:
        import torch  # noqa: F401  (the build extra)
    except ModuleNotFoundError as exc:
        raise ModelBuildError(
            "building whisper needs torch; install it with: pip install 'parley[build]'"
        ) from exc
    from models import whisper_torch

    progress("  reading the CTranslate2 weights")
    ct2 = read_ct2(inputs["model.bin"])
    vocabulary = read_vocabulary(inputs["vocabulary.txt"])
    model = whisper_torch.load_whisper(ct2)
    if len(vocabulary) != model.dims.n_vocab:
        raise ModelBuildError(f"vocabulary has {len(vocabulary)} entries, the model "
                              f"{model.dims.n_vocab}")
    specials = special_tokens(vocabulary)
    progress(f"  writing {TOKENS_FILE}")
    write_tokens(vocabulary, specials["eot"], out_dir / TOKENS_FILE)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        fp32 = Path(tmp)
        progress("  exporting the encoder (dynamic frame axis)")
        _export_encoder(model, fp32 / "encoder.onnx")
        suppress = json.loads(inputs["config.json"].read_text()).get("suppress_ids", [])
        add_metadata(fp32 / "encoder.onnx",
                     encoder_metadata(model.dims, specials, vocabulary, suppress))
        progress("  exporting the decoder (self-attention kv cache, offset)")
        _export_decoder(model, fp32 / "decoder.onnx")
        progress("  checking the ONNX graphs against PyTorch")
        _check_export(model, fp32 / "encoder.onnx", fp32 / "decoder.onnx")
        (fp32 / "encoder.onnx").replace(out_dir / ENCODER_FILE)
        progress("  quantizing the decoder weights to int8 (MatMulNBits, 8 bits, blocks of 32)")
        quantize_weights(fp32 / "decoder.onnx", out_dir / DECODER_FILE)


def read_vocabulary(path: Path) -> list[str]:
    """CTranslate2's vocabulary.txt: one token per line, line number = token id."""
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def special_tokens(vocabulary: list[str]) -> dict[str, int]:
    """Ids of Whisper's special tokens, found by name in the vocabulary."""
    index = {tok: i for i, tok in enumerate(vocabulary) if tok.startswith("<|")}
    names = {
        "eot": "<|endoftext|>", "sot": "<|startoftranscript|>", "translate": "<|translate|>",
        "transcribe": "<|transcribe|>", "sot_lm": "<|startoflm|>", "sot_prev": "<|startofprev|>",
        "no_timestamps": "<|notimestamps|>",
    }
    try:
        ids = {key: index[tok] for key, tok in names.items()}
        ids["no_speech"] = index.get("<|nospeech|>", index["<|nocaptions|>"])
    except KeyError as exc:
        raise ModelBuildError(f"vocabulary.txt lacks the special token {exc}") from exc
    return ids


def _byte_decoder() -> dict[str, int]:
    """GPT-2 byte-level BPE: the printable stand-in character of each byte -> the byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    table = {b: b for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = 256 + extra
            extra += 1
    return {chr(code): b for b, code in table.items()}


def write_tokens(vocabulary: list[str], eot: int, path: Path) -> None:
    """``base64(bytes) id`` per ordinary token (ids below ``eot``), as sherpa-onnx reads it."""
    decode = _byte_decoder()
    lines = []
    for i, token in enumerate(vocabulary[:eot]):
        raw = bytes(decode[ch] for ch in token)
        lines.append(f"{base64.b64encode(raw).decode('ascii')} {i}\n")
    path.write_text("".join(lines), encoding="utf-8")


def encoder_metadata(dims: Any, specials: dict[str, int], vocabulary: list[str],
                     suppress: list[int]) -> dict[str, str]:
    """The keys sherpa-onnx's whisper model reads from the encoder (plus descriptive ones)."""
    languages = [(i, tok[2:-2]) for i, tok in enumerate(vocabulary)
                 if specials["sot"] < i < specials["translate"]]
    meta: dict[str, object] = {
        "model_type": f"whisper-{MODEL_NAME}", "version": "1", "maintainer": "parley",
        "n_mels": dims.n_mels, "n_audio_ctx": dims.n_audio_ctx,
        "n_audio_state": dims.n_audio_state, "n_audio_head": dims.n_audio_head,
        "n_audio_layer": dims.n_audio_layer, "n_vocab": dims.n_vocab,
        "n_text_ctx": dims.n_text_ctx, "n_text_state": dims.n_text_state,
        "n_text_head": dims.n_text_head, "n_text_layer": dims.n_text_layer,
        "sot_sequence": str(specials["sot"]), "sot_index": 0,
        "all_language_tokens": ",".join(str(i) for i, _ in languages),
        "all_language_codes": ",".join(code for _, code in languages),
        "blank_id": vocabulary.index("Ġ"), "is_multilingual": 0,
        "non_speech_tokens": ",".join(map(str, suppress)),
        "dynamic_frames": 1,
        **{k: specials[k] for k in ("sot", "eot", "no_speech", "transcribe", "translate",
                                    "sot_prev", "sot_lm", "no_timestamps")},
    }
    return {k: str(v) for k, v in meta.items()}


def add_metadata(path: Path, meta: dict[str, str]) -> None:
    import onnx

    model = onnx.load(str(path))
    for key, value in sorted(meta.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def quantize_weights(src: Path, dst: Path) -> None:
    """Weight-only int8 quantization of every MatMul (blocks of 32, symmetric).

    Activations stay float (``accuracy_level`` 4 lets the kernel quantize them per block
    on the fly). The per-tensor dynamic quantization of activations that
    ``quantize_dynamic`` applies changes tiny.en's greedy transcripts of hard utterances
    far more (about 13% WER against the float model here, vs about 1%).
    """
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    config = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True, accuracy_level=4,
                                          bits=8)
    quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), algo_config=config)
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=False)


def _export_encoder(model: Any, path: Path) -> None:
    import torch

    from models.whisper_torch import CrossKVEncoder

    mel = torch.zeros(1, model.dims.n_mels, 400)
    with torch.no_grad():
        torch.onnx.export(
            CrossKVEncoder(model), (mel,), str(path), dynamo=False, opset_version=OPSET,
            input_names=["mel"], output_names=["n_layer_cross_k", "n_layer_cross_v"],
            dynamic_axes={"mel": {0: "n_audio", 2: "n_frames"},
                          "n_layer_cross_k": {1: "n_audio", 2: "n_audio_ctx"},
                          "n_layer_cross_v": {1: "n_audio", 2: "n_audio_ctx"}},
        )


def _decoder_inputs(model: Any, n_tokens: int, offset: int, ctx: int) -> tuple[Any, ...]:
    import torch

    d = model.dims
    gen = torch.Generator().manual_seed(0)
    cache = (d.n_text_layer, 1, d.n_text_ctx, d.n_text_state)
    cross = (d.n_text_layer, 1, ctx, d.n_text_state)
    return (
        torch.randint(0, 50000, (1, n_tokens), generator=gen, dtype=torch.int64),
        torch.randn(cache, generator=gen), torch.randn(cache, generator=gen),
        torch.randn(cross, generator=gen), torch.randn(cross, generator=gen),
        torch.tensor([offset], dtype=torch.int64),
    )


def _export_decoder(model: Any, path: Path) -> None:
    import torch

    from models.whisper_torch import CachedDecoder

    with torch.no_grad():
        torch.onnx.export(
            CachedDecoder(model), _decoder_inputs(model, 3, 0, 200), str(path), dynamo=False,
            opset_version=OPSET,
            input_names=["tokens", "in_n_layer_self_k_cache", "in_n_layer_self_v_cache",
                         "n_layer_cross_k", "n_layer_cross_v", "offset"],
            output_names=["logits", "out_n_layer_self_k_cache", "out_n_layer_self_v_cache"],
            dynamic_axes={"tokens": {0: "n_audio", 1: "n_tokens"},
                          "in_n_layer_self_k_cache": {1: "n_audio"},
                          "in_n_layer_self_v_cache": {1: "n_audio"},
                          "n_layer_cross_k": {1: "n_audio", 2: "n_audio_ctx"},
                          "n_layer_cross_v": {1: "n_audio", 2: "n_audio_ctx"},
                          "logits": {0: "n_audio", 1: "n_tokens"},
                          "out_n_layer_self_k_cache": {1: "n_audio"},
                          "out_n_layer_self_v_cache": {1: "n_audio"}},
        )


def _check_export(model: Any, encoder: Path, decoder: Path) -> None:
    """The float ONNX graphs must reproduce PyTorch on inputs of another shape than traced."""
    import onnxruntime as ort
    import torch

    from models.whisper_torch import CachedDecoder, CrossKVEncoder

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = min(2, os.cpu_count() or 1)
    mel = torch.randn(1, model.dims.n_mels, 250, generator=torch.Generator().manual_seed(1))
    enc = ort.InferenceSession(str(encoder), opts, providers=["CPUExecutionProvider"])
    got_k, _ = enc.run(None, {"mel": mel.numpy()})
    with torch.no_grad():
        want_k, _ = CrossKVEncoder(model)(mel)
        step = _decoder_inputs(model, 1, 5, 125)
        want_logits = CachedDecoder(model)(*step)[0]
    dec = ort.InferenceSession(str(decoder), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in dec.get_inputs()]
    got_logits = dec.run(None, dict(zip(names, (t.numpy() for t in step), strict=True)))[0]
    errors = {"encoder": float(np.abs(got_k - want_k.numpy()).max()),
              "decoder": float(np.abs(got_logits - want_logits.numpy()).max())}
    if max(errors.values()) > 1e-2:
        raise ModelBuildError(f"ONNX export differs from PyTorch: {json.dumps(errors)}")
