"""The piper voice builder: sherpa-onnx metadata, tokens.txt, idempotence, and a real load."""

# IPA phonemes are the subject here: their look-alike letters are meant.
# ruff: noqa: RUF001

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from models import piper_voice, registry
from shared.errors import ModelBuildError

PHONEMES = {"_": [0], "^": [1], "$": [2], " ": [3], "!": [4], ",": [8], ".": [10], "a": [14],
            "ˈ": [120], "\n": [200]}
CONFIG = {"audio": {"sample_rate": 22050}, "espeak": {"voice": "en-us"}, "num_speakers": 1,
          "language": {"name_english": "English"}, "phoneme_id_map": PHONEMES,
          "inference": {"noise_scale": 0.667, "length_scale": 1, "noise_w": 0.8}}


def tiny_voice(tmp_path: Path) -> dict[str, Path]:
    """A stand-in piper voice: a one-node ONNX graph with one metadata key, and its config."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])], "voice",
        [helper.make_tensor_value_info("input", TensorProto.INT64, [1, None])],
        [helper.make_tensor_value_info("output", TensorProto.INT64, [1, None])])
    model = helper.make_model(graph)
    onnx.helper.set_model_props(model, {"trained_by": "someone", "sample_rate": "16000"})
    onnx.save(model, str(tmp_path / "voice.onnx"))
    (tmp_path / "voice.onnx.json").write_text(json.dumps(CONFIG), encoding="utf-8")
    return {"voice.onnx": tmp_path / "voice.onnx", "voice.onnx.json": tmp_path / "voice.onnx.json"}


def metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_build_writes_the_files_the_manifest_names(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    piper_voice.build(tiny_voice(tmp_path), out, progress=lambda _: None)
    expected = set(registry.spec("piper-en_US-joe-medium").files.values())
    assert {p.name for p in out.iterdir()} == expected


def test_metadata_marks_a_single_speaker_piper_vits_model(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    piper_voice.build(tiny_voice(tmp_path), out, progress=lambda _: None)
    meta = metadata(out / piper_voice.MODEL_FILE)
    assert meta["model_type"] == "vits"
    assert meta["comment"] == "piper"
    assert meta["sample_rate"] == "22050"  # the config wins over a stale key
    assert meta["n_speakers"] == "1"
    assert meta["language"] == "English" and meta["voice"] == "en-us"
    assert meta["trained_by"] == "someone"  # unrelated keys are kept


def test_tokens_map_each_phoneme_to_its_first_id_sorted_and_keep_the_space(
    tmp_path: Path,
) -> None:
    lines = piper_voice.token_lines(CONFIG)
    assert lines[:4] == ["_ 0", "^ 1", "$ 2", "  3"]
    assert "ˈ 120" in lines
    assert not any(line.startswith("\n") for line in lines)  # cannot be written: left out


def test_rebuilding_gives_identical_files(tmp_path: Path) -> None:
    inputs = tiny_voice(tmp_path)
    digests = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        piper_voice.build(inputs, tmp_path / name, progress=lambda _: None)
        digests.append({p.name: registry.sha256_file(p) for p in (tmp_path / name).iterdir()})
    assert digests[0] == digests[1]


def test_rebuilding_from_its_own_output_changes_nothing(tmp_path: Path) -> None:
    first = tmp_path / "first"
    second = tmp_path / "second"
    first.mkdir()
    second.mkdir()
    piper_voice.build(tiny_voice(tmp_path), first, progress=lambda _: None)
    again = {"voice.onnx": first / piper_voice.MODEL_FILE,
             "voice.onnx.json": first / piper_voice.CONFIG_FILE}
    piper_voice.build(again, second, progress=lambda _: None)
    assert metadata(first / piper_voice.MODEL_FILE) == metadata(second / piper_voice.MODEL_FILE)


@pytest.mark.parametrize("config", [
    "not json",
    json.dumps({"audio": {"sample_rate": 22050}, "num_speakers": 1}),
    json.dumps({**CONFIG, "phoneme_id_map": {"a": [1]}}),
])
def test_a_config_that_is_not_a_piper_voice_is_a_build_error(tmp_path: Path, config: str) -> None:
    inputs = tiny_voice(tmp_path)
    inputs["voice.onnx.json"].write_text(config, encoding="utf-8")
    with pytest.raises(ModelBuildError) as err:
        piper_voice.build(inputs, tmp_path, progress=lambda _: None)
    assert "\n" not in str(err.value)


def test_a_model_that_is_not_onnx_is_a_build_error(tmp_path: Path) -> None:
    inputs = tiny_voice(tmp_path)
    inputs["voice.onnx"].write_bytes(b"\x00garbage" * 100)
    (tmp_path / "out").mkdir()
    with pytest.raises(ModelBuildError):
        piper_voice.build(inputs, tmp_path / "out", progress=lambda _: None)


def test_the_built_voice_loads_in_sherpa_onnx_and_speaks() -> None:
    import sherpa_onnx

    spec = registry.default_spec("tts")
    if not registry.status(spec).ready:
        from models.build import build_all

        build_all([spec.name], progress=lambda _: None)
    files = registry.model_files(spec.name)
    config = sherpa_onnx.OfflineTtsConfig(model=sherpa_onnx.OfflineTtsModelConfig(
        vits=sherpa_onnx.OfflineTtsVitsModelConfig(model=str(files["model"]),
                                                   tokens=str(files["tokens"])),
        num_threads=1))
    tts = sherpa_onnx.OfflineTts(config)
    assert tts.sample_rate == 22050
    gen = sherpa_onnx.GenerationConfig()
    gen.phoneme_codepoints = [[ord(c) for c in "həlˈoʊ."]]
    samples = np.asarray(tts.generate("", gen).samples, dtype=np.float32)
    assert 0.2 < samples.size / tts.sample_rate < 2.0
    assert np.sqrt(np.mean(samples**2)) > 0.01
