"""Builder for piper voices: make a piper VITS ``.onnx`` loadable by sherpa-onnx 2.x.

A piper voice ships as ``voice.onnx`` + ``voice.onnx.json``. sherpa-onnx's VITS loader reads
its settings from the ONNX metadata (``model_type``, ``comment``, ``sample_rate``,
``n_speakers``, ``language``, ``voice``...) and maps phonemes to ids through ``tokens.txt``.
This builder writes both; the ``.onnx.json`` is kept beside them for the inference defaults
(noise / length scales) and the phoneme map. Rebuilding from the same inputs gives the same
files (metadata keys are written in a fixed order, replacing any earlier values).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.errors import ModelBuildError

BUILDER_VERSION = "1"
VOICE_NAME = "en_US-joe-medium"
MODEL_FILE = f"{VOICE_NAME}.onnx"
CONFIG_FILE = f"{VOICE_NAME}.onnx.json"
TOKENS_FILE = "tokens.txt"


def build(inputs: dict[str, Path], out_dir: Path, progress: Callable[[str], None]) -> None:
    """Write ``en_US-joe-medium.onnx`` (with metadata), ``tokens.txt`` and the ``.onnx.json``."""
    config = read_config(inputs["voice.onnx.json"])
    progress("  writing tokens.txt from the phoneme_id_map")
    write_tokens(config, out_dir / TOKENS_FILE)
    progress("  adding the sherpa-onnx VITS metadata to the voice")
    add_metadata(inputs["voice.onnx"], out_dir / MODEL_FILE, sherpa_metadata(config))
    shutil.copyfile(inputs["voice.onnx.json"], out_dir / CONFIG_FILE)


def read_config(path: Path) -> dict[str, Any]:
    """The piper ``.onnx.json``; ``ModelBuildError`` when it is not a usable piper config."""
    try:
        config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelBuildError(f"{path.name} is not a readable piper voice config ({exc})") from exc
    for key in ("phoneme_id_map", "audio", "num_speakers"):
        if key not in config:
            raise ModelBuildError(f"{path.name} has no '{key}'; is it a piper voice config?")
    if not {"_", "^", "$"} <= set(config["phoneme_id_map"]):
        raise ModelBuildError(f"{path.name}: phoneme_id_map lacks the pad/bos/eos symbols _ ^ $")
    return config


def token_lines(config: dict[str, Any]) -> list[str]:
    """``symbol id`` lines, one per single-character phoneme, sorted by id.

    A symbol that is a space is written as-is (the line starts with a space); sherpa-onnx reads
    that as the space token. Newlines cannot be written in this format and are left out.
    """
    rows: list[tuple[int, str]] = []
    for symbol, ids in config["phoneme_id_map"].items():
        ident = ids[0] if isinstance(ids, list) else ids
        if symbol in ("\n", "\r") or len(symbol) != 1:
            continue
        rows.append((int(ident), symbol))
    return [f"{symbol} {ident}" for ident, symbol in sorted(rows)]


def write_tokens(config: dict[str, Any], path: Path) -> None:
    path.write_text("\n".join(token_lines(config)) + "\n", encoding="utf-8")


def sherpa_metadata(config: dict[str, Any]) -> dict[str, str]:
    """The metadata sherpa-onnx's VITS model reads, derived from the piper config."""
    sample_rate = int(config["audio"]["sample_rate"])
    language = config.get("language", {})
    return {
        "model_type": "vits",
        "comment": "piper",  # selects the piper input layout (input, input_lengths, scales)
        "language": str(language.get("name_english", "English")),
        "voice": str(config.get("espeak", {}).get("voice", "en-us")),
        "version": "1",
        "has_espeak": "1",
        "n_speakers": str(int(config["num_speakers"])),
        "sample_rate": str(sample_rate),
        "add_blank": "0",
    }


def add_metadata(src: Path, dst: Path, metadata: dict[str, str]) -> None:
    """Copy the ONNX model ``src`` to ``dst`` with ``metadata`` set (other keys kept)."""
    import onnx

    try:
        model = onnx.load(str(src))
    except Exception as exc:  # onnx raises several unrelated types for a bad file
        raise ModelBuildError(f"{src.name} is not a readable ONNX model ({exc})") from exc
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    for key, value in [*kept, *metadata.items()]:
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(dst))
