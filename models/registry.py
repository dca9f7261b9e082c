"""Where each model lives, and whether it is ready. The one place that resolves model paths."""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

from shared.errors import ConfigError, ModelNotReadyError

Kind = Literal["vad", "asr", "llm", "tts"]
KINDS: tuple[Kind, ...] = ("vad", "asr", "llm", "tts")
MANIFEST = Path(__file__).with_name("manifest.toml")
STAMP = "BUILD.json"


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A file taken from inside a registry wheel, with its expected sha256."""

    wheel_path: str
    sha256: str


@dataclass(frozen=True, slots=True)
class Download:
    """A file fetched by ``parley models fetch`` from its URL, with its pinned sha256."""

    url: str
    sha256: str


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One manifest entry."""

    name: str
    kind: Kind
    license: str
    builder: str
    files: dict[str, str]
    default: bool = False
    package: str = ""
    version: str = ""
    inputs: dict[str, SourceFile] = field(default_factory=dict)
    url: str = ""
    sha256: str = ""
    archive_files: dict[str, str] = field(default_factory=dict)
    downloads: dict[str, Download] = field(default_factory=dict)

    @property
    def embedded(self) -> bool:
        """True when the model is built from a registry wheel (no network beyond PyPI)."""
        return bool(self.package)


@dataclass(frozen=True, slots=True)
class ModelStatus:
    name: str
    kind: Kind
    path: Path
    ready: bool
    sha256: dict[str, str]

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "kind": self.kind, "path": str(self.path),
                "ready": self.ready, "sha256": self.sha256}


def models_dir() -> Path:
    """``$PARLEY_MODELS_DIR`` or ``models/build`` beside this file."""
    env = os.environ.get("PARLEY_MODELS_DIR")
    return Path(env).expanduser() if env else Path(__file__).with_name("build")


@cache
def load_manifest(path: Path = MANIFEST) -> tuple[ModelSpec, ...]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    specs = []
    for entry in data.get("model", []):
        inputs = {k: SourceFile(**v) for k, v in entry.get("inputs", {}).items()}
        specs.append(ModelSpec(
            name=entry["name"], kind=entry["kind"], license=entry["license"],
            builder=entry["builder"], files=dict(entry["files"]),
            default=bool(entry.get("default", False)),
            package=entry.get("package", ""), version=entry.get("version", ""), inputs=inputs,
            url=entry.get("url", ""), sha256=entry.get("sha256", ""),
            archive_files=dict(entry.get("archive_files", {})),
            downloads={k: Download(**v) for k, v in entry.get("downloads", {}).items()},
        ))
    return tuple(specs)


def spec(name: str) -> ModelSpec:
    for s in load_manifest():
        if s.name == name:
            return s
    known = ", ".join(s.name for s in load_manifest())
    raise ConfigError(f"unknown model '{name}' (known: {known})")


def default_spec(kind: Kind) -> ModelSpec:
    for s in load_manifest():
        if s.kind == kind and s.default:
            return s
    raise ConfigError(f"the manifest has no default {kind} model")


def model_dir(name: str) -> Path:
    return models_dir() / name


def model_files(name: str) -> dict[str, Path]:
    """Paths of a ready model's files by role; ``ModelNotReadyError`` says how to get them."""
    s = spec(name)
    paths = {role: model_dir(name) / fname for role, fname in s.files.items()}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing or not (model_dir(name) / STAMP).is_file():
        how = "parley models build" if s.embedded else f"parley models fetch {name}"
        raise ModelNotReadyError(f"model '{name}' is not ready; run: {how}")
    return paths


def model_file(name: str, role: str = "model") -> Path:
    return model_files(name)[role]


def status(s: ModelSpec) -> ModelStatus:
    d = model_dir(s.name)
    stamp = d / STAMP
    sha: dict[str, str] = {}
    ready = stamp.is_file() and all((d / f).is_file() for f in s.files.values())
    if ready:
        recorded = json.loads(stamp.read_text(encoding="utf-8")).get("sha256", {})
        sha = {f: recorded.get(f, "") for f in s.files.values()}
    return ModelStatus(name=s.name, kind=s.kind, path=d, ready=ready, sha256=sha)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_stamp(name: str, extra: dict[str, object] | None = None) -> dict[str, str]:
    """Record the sha256 of a freshly built model's files; marks the model ready."""
    s = spec(name)
    d = model_dir(name)
    sha = {f: sha256_file(d / f) for f in s.files.values()}
    payload: dict[str, object] = {"name": name, "sha256": sha, **(extra or {})}
    (d / STAMP).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return sha


def read_stamp(name: str) -> dict[str, object]:
    stamp = model_dir(name) / STAMP
    if not stamp.is_file():
        return {}
    data: dict[str, object] = json.loads(stamp.read_text(encoding="utf-8"))
    return data
