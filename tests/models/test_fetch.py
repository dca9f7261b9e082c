"""``parley models fetch``: download over loopback, verify, install, and fail in one line.

The real URLs are never reached (this machine has no internet): a small HTTP server on
127.0.0.1 plays the model hosts through ``PARLEY_MODELS_MIRROR``, serving generated files whose
sha256 the test specs pin. The specs are the real manifest entries with only the name and the
checksums changed, so the real archive layout and voice build are exercised.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from models import registry
from models.fetch import fetch_model, mirrored, planned_downloads
from models.registry import Download, ModelSpec
from shared.cli import main
from shared.errors import ModelBuildError, NetworkError

PARLEY = Path(sys.executable).with_name("parley")


@dataclass
class Mirror:
    """Files served by URL path; ``cut_after`` breaks the next reply after that many bytes."""

    base: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    cut_after: int | None = None

    def serve(self, url: str, body: bytes) -> None:
        parts = urlsplit(url)
        self.files[f"/{parts.netloc}{parts.path}"] = body


def make_handler(mirror: Mirror) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            wanted = self.headers.get("Range")
            mirror.requests.append((self.path, wanted))
            body = mirror.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            start = int(wanted.split("=")[1].split("-")[0]) if wanted else 0
            self.send_response(206 if wanted else 200)
            if wanted:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            payload, mirror.cut_after = body[start : mirror.cut_after], None
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def mirror(monkeypatch: pytest.MonkeyPatch) -> Iterator[Mirror]:
    state = Mirror()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("PARLEY_MODELS_MIRROR", state.base)
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PARLEY_MODELS_DIR", str(tmp_path / "models"))
    return tmp_path / "models"


@pytest.fixture
def add_spec(monkeypatch: pytest.MonkeyPatch) -> Callable[[ModelSpec], ModelSpec]:
    """Add test entries to the manifest that the registry and the CLI see."""
    extra: list[ModelSpec] = []
    real = registry.load_manifest()
    monkeypatch.setattr(registry, "load_manifest", lambda path=None: (*real, *extra))

    def add(spec: ModelSpec) -> ModelSpec:
        extra.append(spec)
        return spec

    return add


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tar_bz2(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:bz2") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, list[str]]:
    """Run ``parley ARGS`` in-process: (exit code, stdout, stderr lines)."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), out, err.strip().splitlines()


def zipformer_test_spec(archive: bytes) -> ModelSpec:
    return replace(registry.spec("zipformer-en-streaming"), name="zipformer-test",
                   sha256=sha256(archive))


def zipformer_archive() -> tuple[bytes, dict[str, bytes]]:
    """A tar.bz2 with the real member layout, one junk member and one escaping member."""
    real = registry.spec("zipformer-en-streaming")
    contents = {role: f"{role} weights".encode() for role in real.archive_files}
    members = {real.archive_files[role]: data for role, data in contents.items()}
    members["sherpa-onnx-streaming-zipformer-en-2023-06-26/README.md"] = b"junk"
    members["../../escaped.txt"] = b"must never be written"
    return tar_bz2(members), contents


def test_real_fetch_offline_fails_in_one_line(tmp_path: Path) -> None:
    """The real command, real URL: no network here, so one line and no traceback."""
    try:
        socket.create_connection(("github.com", 443), timeout=3).close()
        pytest.skip("this machine reaches github.com; the refused-mirror test covers it")
    except OSError:
        pass
    env = {**os.environ, "PARLEY_MODELS_DIR": str(tmp_path), "PARLEY_FETCH_TIMEOUT": "5"}
    env.pop("PARLEY_MODELS_MIRROR", None)
    proc = subprocess.run([str(PARLEY), "models", "fetch", "zipformer-en-streaming"],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "zipformer-en-streaming" in lines[0] and "github.com" in lines[0]
    assert "offline" in lines[0] or "unreachable" in lines[0]
    assert not (tmp_path / "zipformer-en-streaming").exists()


def test_fetch_against_refused_host_fails_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: connecting is refused
    env = {**os.environ, "PARLEY_MODELS_DIR": str(tmp_path),
           "PARLEY_MODELS_MIRROR": f"http://127.0.0.1:{port}"}
    proc = subprocess.run([str(PARLEY), "models", "fetch", "qwen2.5-1.5b-instruct"],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and "Traceback" not in proc.stderr
    assert f"127.0.0.1:{port} is unreachable" in lines[0]
    assert "qwen2.5-1.5b-instruct" in lines[0] and "offline" in lines[0]


def test_fetch_archive_installs_members_and_lists_ready(
    mirror: Mirror, models_dir: Path, add_spec: Callable[[ModelSpec], ModelSpec],
    capsys: pytest.CaptureFixture[str],
) -> None:
    archive, contents = zipformer_archive()
    spec = add_spec(zipformer_test_spec(archive))
    mirror.serve(spec.url, archive)

    code, out, err = run_cli(capsys, "models", "fetch", "zipformer-test")

    assert (code, err) == (0, [])
    assert "sha256 verified" in out and "zipformer-test ready at" in out
    folder = models_dir / "zipformer-test"
    assert {p.name for p in folder.iterdir()} == {*spec.files.values(), registry.STAMP}
    for role, fname in spec.files.items():
        assert (folder / fname).read_bytes() == contents[role]
    assert not list(models_dir.rglob("escaped.txt"))
    assert not (models_dir / ".downloads" / "zipformer-test").exists()
    code, out, _ = run_cli(capsys, "models", "list", "--json")
    row = next(r for r in json.loads(out) if r["name"] == "zipformer-test")
    assert row["ready"] is True
    assert row["sha256"]["tokens.txt"] == sha256(contents["tokens"])


def test_second_fetch_says_ready_without_downloading(
    mirror: Mirror, models_dir: Path, add_spec: Callable[[ModelSpec], ModelSpec],
    capsys: pytest.CaptureFixture[str],
) -> None:
    gguf = b"GGUF" + bytes(range(256)) * 64
    spec = add_spec(replace(registry.spec("qwen2.5-1.5b-instruct"), name="qwen-test",
                            sha256=sha256(gguf)))
    mirror.serve(spec.url, gguf)
    assert run_cli(capsys, "models", "fetch", "qwen-test")[0] == 0
    assert registry.model_file("qwen-test").read_bytes() == gguf

    code, out, _ = run_cli(capsys, "models", "fetch", "qwen-test")

    assert code == 0 and "already ready" in out
    assert len(mirror.requests) == 1


def test_checksum_mismatch_is_one_line_and_removes_the_file(
    mirror: Mirror, models_dir: Path, add_spec: Callable[[ModelSpec], ModelSpec],
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = add_spec(replace(registry.spec("qwen2.5-1.5b-instruct"), name="qwen-test",
                            sha256=sha256(b"the real weights")))
    mirror.serve(spec.url, b"tampered weights")

    code, _, err = run_cli(capsys, "models", "fetch", "qwen-test")

    assert code == 1 and len(err) == 1
    assert "sha256" in err[0] and "removed" in err[0] and "qwen-test" in err[0]
    assert not list((models_dir / ".downloads").rglob("*.gguf*"))
    assert not registry.status(spec).ready


def test_unpinned_file_needs_trust_and_shows_its_digest(
    mirror: Mirror, models_dir: Path, add_spec: Callable[[ModelSpec], ModelSpec],
    capsys: pytest.CaptureFixture[str],
) -> None:
    gguf = b"GGUF unpinned"
    spec = add_spec(replace(registry.spec("qwen2.5-1.5b-instruct"), name="qwen-test", sha256=""))
    mirror.serve(spec.url, gguf)

    code, _, err = run_cli(capsys, "models", "fetch", "qwen-test")
    assert code == 1 and len(err) == 1
    assert sha256(gguf) in err[0] and "--trust-unpinned" in err[0]
    assert not registry.status(spec).ready

    code, out, err = run_cli(capsys, "models", "fetch", "qwen-test", "--trust-unpinned")
    assert (code, err) == (0, [])
    assert sha256(gguf) in out and registry.status(spec).ready


def test_archive_member_that_is_a_link_is_refused(
    mirror: Mirror, models_dir: Path, add_spec: Callable[[ModelSpec], ModelSpec],
    capsys: pytest.CaptureFixture[str],
) -> None:
    real = registry.spec("zipformer-en-streaming")
    members = {path: b"w" for role, path in real.archive_files.items() if role != "tokens"}
    archive = tar_bz2(members, links={real.archive_files["tokens"]: "/etc/passwd"})
    spec = add_spec(zipformer_test_spec(archive))
    mirror.serve(spec.url, archive)

    code, _, err = run_cli(capsys, "models", "fetch", "zipformer-test")

    assert code == 1 and len(err) == 1 and "not a regular file" in err[0]
    assert not (models_dir / "zipformer-test").exists()
    assert not list(models_dir.glob(".zipformer-test.partial"))


def test_interrupted_download_resumes(
    mirror: Mirror, models_dir: Path, add_spec: Callable[[ModelSpec], ModelSpec]
) -> None:
    gguf = os.urandom(300_000)
    spec = add_spec(replace(registry.spec("qwen2.5-1.5b-instruct"), name="qwen-test",
                            sha256=sha256(gguf)))
    mirror.serve(spec.url, gguf)
    mirror.cut_after = 120_000

    with pytest.raises(NetworkError, match=r"broke off after 0\.1 MB.*run the same command again"):
        fetch_model(spec, progress=lambda _: None)
    fetch_model(spec, progress=lambda _: None)

    assert registry.model_file("qwen-test").read_bytes() == gguf
    assert [rng for _, rng in mirror.requests] == [None, "bytes=120000-"]


def test_http_error_names_host_and_status(mirror: Mirror, models_dir: Path) -> None:
    with pytest.raises(NetworkError) as failed:  # the mirror serves nothing: 404
        fetch_model(registry.spec("qwen2.5-1.5b-instruct"), progress=lambda _: None)
    assert "HTTP 404" in str(failed.value) and "127.0.0.1" in str(failed.value)
    assert "\n" not in str(failed.value)


def test_host_that_never_answers_times_out_in_one_line(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        monkeypatch.setenv("PARLEY_MODELS_MIRROR", f"http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setenv("PARLEY_FETCH_TIMEOUT", "0.5")
        with pytest.raises(NetworkError, match="stopped answering"):
            fetch_model(registry.spec("qwen2.5-1.5b-instruct"), progress=lambda _: None)


def test_unknown_and_embedded_models_are_one_line(
    models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "models", "fetch", "no-such-model")
    assert code == 2 and len(err) == 1 and "unknown model 'no-such-model'" in err[0]
    code, _, err = run_cli(capsys, "models", "fetch", "silero-vad")
    assert code == 2 and len(err) == 1 and "parley models build" in err[0]


def test_unwritable_models_dir_is_one_line(
    tmp_path: Path, mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("PARLEY_MODELS_DIR", str(tmp_path / "a-file" / "models"))

    with pytest.raises(ModelBuildError, match=r"cannot install model 'qwen2\.5-1\.5b-instruct'"):
        fetch_model(registry.spec("qwen2.5-1.5b-instruct"), progress=lambda _: None)


def test_fetched_piper_voice_gets_sherpa_metadata_and_tokens(
    mirror: Mirror, models_dir: Path, add_spec: Callable[[ModelSpec], ModelSpec]
) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])], "voice",
        [helper.make_tensor_value_info("input", TensorProto.INT64, [1, None])],
        [helper.make_tensor_value_info("output", TensorProto.INT64, [1, None])],
    )
    voice = helper.make_model(graph).SerializeToString()
    config = json.dumps({
        "audio": {"sample_rate": 22050}, "num_speakers": 1, "espeak": {"voice": "en-us"},
        "language": {"name_english": "English"},
        "phoneme_id_map": {"_": [0], "^": [1], "$": [2], " ": [3], "a": [4]},
    }).encode()
    real = registry.spec("piper-en_US-amy-medium")
    downloads = {"voice.onnx": Download(real.downloads["voice.onnx"].url, sha256(voice)),
                 "voice.onnx.json": Download(real.downloads["voice.onnx.json"].url,
                                             sha256(config))}
    spec = add_spec(replace(real, name="amy-test", downloads=downloads))
    mirror.serve(downloads["voice.onnx"].url, voice)
    mirror.serve(downloads["voice.onnx.json"].url, config)

    fetch_model(spec, progress=lambda _: None)

    files = registry.model_files("amy-test")
    meta = {p.key: p.value for p in onnx.load(str(files["model"])).metadata_props}
    assert meta["model_type"] == "vits" and meta["sample_rate"] == "22050"
    assert files["tokens"].read_text(encoding="utf-8").splitlines()[-1] == "a 4"
    assert files["config"].read_bytes() == config
    assert files["model"].name == "en_US-amy-medium.onnx"


def test_online_manifest_entries_are_pinned_https_downloads() -> None:
    online = [s for s in registry.load_manifest() if not s.embedded]
    assert {s.kind for s in online} == {"asr", "llm", "tts"}
    for spec in online:
        assert spec.license and not spec.default
        for item in planned_downloads(spec).values():
            assert item.url.startswith("https://")
            assert re.fullmatch(r"[0-9a-f]{64}", item.sha256), spec.name
        if spec.archive_files:
            assert set(spec.archive_files) == set(spec.files)
        if spec.builder == "piper":
            assert set(spec.downloads) == {"voice.onnx", "voice.onnx.json"}


def test_mirror_keeps_host_and_path(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "https://huggingface.co/Qwen/x/resolve/main/m.gguf?download=true"
    monkeypatch.delenv("PARLEY_MODELS_MIRROR", raising=False)
    assert mirrored(url) == url
    monkeypatch.setenv("PARLEY_MODELS_MIRROR", "http://mirror.lan/models/")
    expected = "http://mirror.lan/models/huggingface.co/Qwen/x/resolve/main/m.gguf?download=true"
    assert mirrored(url) == expected
