"""``parley models fetch NAME``: install a production model that lives online.

Nothing here runs at run time: only this explicit command touches the network. Each file is
downloaded (streamed, resumable) into ``<models dir>/.downloads/<name>/``, checked against the
sha256 pinned in the manifest, then the model is assembled in a scratch folder (archive members
extracted by name, or the model's builder run on the downloads) and moved into place whole, so
an interrupted fetch never leaves a model that looks ready. ``PARLEY_MODELS_MIRROR=<base>``
fetches ``<base>/<host>/<path>`` instead of each URL (a mirror laid out like
``wget --force-directories``); ``PARLEY_FETCH_TIMEOUT`` sets the connect/read timeout in seconds.

Every expected failure (no network, HTTP error, checksum mismatch, full disk, bad archive) is a
``ParleyError`` with a one-line message.
"""

from __future__ import annotations

import importlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from models import registry
from models.fetch_archive import extract_members
from models.registry import Download, ModelSpec
from shared.errors import ConfigError, ModelBuildError, NetworkError, ParleyError

if TYPE_CHECKING:
    import httpx

Progress = Callable[[str], None]

MIRROR_ENV = "PARLEY_MODELS_MIRROR"
TIMEOUT_ENV = "PARLEY_FETCH_TIMEOUT"
CONNECT_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 60.0
MB = 1e6
DISK_MARGIN = 64 * 1024 * 1024


def fetch_model(spec: ModelSpec, progress: Progress = print, trust_unpinned: bool = False) -> Path:
    """Download, verify and install ``spec``; return its folder. Idempotent."""
    downloads = planned_downloads(spec)
    key = fetch_key(spec, downloads)
    final = registry.model_dir(spec.name)
    if registry.status(spec).ready and registry.read_stamp(spec.name).get("key") == key:
        progress(f"{spec.name} is already ready at {final}")
        return final
    cache = registry.models_dir() / ".downloads" / spec.name
    with storage_errors(spec.name, registry.models_dir()):
        cache.mkdir(parents=True, exist_ok=True)
        try:
            inputs = {
                name: download(spec.name, name, item, cache, progress, trust_unpinned)
                for name, item in downloads.items()
            }
            install(spec, inputs, final, progress)
        finally:
            if not any(cache.iterdir()):  # keep partial downloads: the next run resumes them
                cache.rmdir()
        sources = {name: item.url for name, item in downloads.items()}
        sha = registry.write_stamp(
            spec.name, {"key": key, "license": spec.license, "source": sources}
        )
        shutil.rmtree(cache, ignore_errors=True)
    for fname, digest in sha.items():
        progress(f"  installed {fname}  sha256 {digest[:16]}...")
    return final


def planned_downloads(spec: ModelSpec) -> dict[str, Download]:
    """The files to download, by local name (the URL's file name for a single ``url``)."""
    planned = dict(spec.downloads)
    if spec.url:
        planned[PurePosixPath(urlsplit(spec.url).path).name] = Download(spec.url, spec.sha256)
    if spec.embedded:
        raise ConfigError(
            f"model '{spec.name}' is embedded, not online; build it with: parley models build"
        )
    if not planned:
        raise ConfigError(f"model '{spec.name}' has no download URL in the manifest")
    return planned


def fetch_key(spec: ModelSpec, downloads: dict[str, Download]) -> dict[str, object]:
    """What the installed files depend on; a stamp with another key means fetch again."""
    from models.build import builder_for

    return {
        "builder": spec.builder,
        "builder_version": builder_for(spec).BUILDER_VERSION,
        "downloads": {name: item.sha256 for name, item in downloads.items()},
        "archive_files": spec.archive_files,
        "files": spec.files,
    }


def mirrored(url: str) -> str:
    """``url``, or its copy under ``$PARLEY_MODELS_MIRROR`` (``<base>/<host>/<path>``)."""
    base = os.environ.get(MIRROR_ENV, "").strip().rstrip("/")
    if not base:
        return url
    parts = urlsplit(url)
    query = f"?{parts.query}" if parts.query else ""
    return f"{base}/{parts.netloc}{parts.path}{query}"


@contextmanager
def storage_errors(model: str, where: Path) -> Iterator[None]:
    """Turn disk and permission errors into one line naming the model and the place."""
    try:
        yield
    except ParleyError:
        raise
    except OSError as exc:
        detail = exc.strerror or str(exc)
        place = exc.filename or where
        raise ModelBuildError(f"cannot install model '{model}': {detail} ({place})") from exc


# --- download -------------------------------------------------------------------------------


def download(
    model: str, name: str, item: Download, cache: Path, progress: Progress, trust_unpinned: bool
) -> Path:
    """The verified file ``cache/name``, downloaded (or resumed) from ``item.url``."""
    target = cache / name
    if target.is_file() and item.sha256 and registry.sha256_file(target) == item.sha256:
        progress(f"  {name}: already downloaded")
        return target
    target.unlink(missing_ok=True)
    part = cache / f"{name}.part"
    url = mirrored(item.url)
    transfer(model, url, part, progress)
    verify(model, name, url, part, item.sha256, trust_unpinned, progress)
    part.replace(target)
    return target


def verify(
    model: str, name: str, url: str, part: Path, pinned: str, trust: bool, progress: Progress
) -> None:
    """Check the downloaded bytes against the manifest; a rejected file is removed."""
    digest = registry.sha256_file(part)
    if not pinned and trust:
        progress(f"  {name}: no pinned sha256; trusting the download (sha256 {digest})")
        return
    if digest == pinned:
        progress(f"  {name}: sha256 verified")
        return
    part.unlink(missing_ok=True)
    if not pinned:
        raise ModelBuildError(
            f"model '{model}': {name} has no sha256 pinned in the manifest (the download's sha256 "
            f"is {digest}); pin it, or run again with --trust-unpinned"
        )
    raise ModelBuildError(
        f"model '{model}': {name} from {host_of(url)} has sha256 {digest[:16]}..., the manifest "
        f"pins {pinned[:16]}...; the download was removed"
    )


def transfer(model: str, url: str, part: Path, progress: Progress) -> None:
    """Stream ``url`` into ``part``, resuming from its current size when the server allows."""
    httpx = import_httpx()
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    progress(f"  downloading {url}" + (f" (resuming at {offset / MB:.1f} MB)" if offset else ""))
    try:
        with open_client(httpx) as client, client.stream("GET", url, headers=headers) as reply:
            if reply.status_code == 416 and offset:  # the partial file is already complete
                return
            if reply.status_code >= 400:
                raise NetworkError(
                    f"cannot fetch model '{model}': {host_of(url)} answered HTTP "
                    f"{reply.status_code} for {url}"
                )
            write_body(reply, part, offset, progress)
    except httpx.TransportError as exc:
        unreachable = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
        raise NetworkError(transport_message(model, url, part, exc, unreachable)) from exc


def write_body(reply: httpx.Response, part: Path, offset: int, progress: Progress) -> None:
    """Append (206) or rewrite (200) ``part`` from the reply body, reporting progress."""
    resumed = reply.status_code == 206 and content_range_start(reply) == offset
    done = offset if resumed else 0
    length = int(reply.headers.get("Content-Length", "0") or 0)
    total = done + length if length else 0
    ensure_space(part.parent, length)
    meter = ProgressMeter(total, progress)
    with part.open("ab" if resumed else "wb") as out:
        for block in reply.iter_bytes():  # as received: a broken reply keeps every byte
            out.write(block)
            done += len(block)
            meter.update(done)


def content_range_start(reply: httpx.Response) -> int:
    """First byte of a ``Content-Range: bytes a-b/n`` header (-1 when absent or malformed)."""
    value = reply.headers.get("Content-Range", "")
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return -1


def ensure_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed and free < needed + DISK_MARGIN:
        raise ModelBuildError(
            f"not enough disk space in {folder}: {needed / MB:.0f} MB needed, "
            f"{free / MB:.0f} MB free"
        )


class ProgressMeter:
    """Progress lines every 10 % (or every 50 MB when the size is unknown)."""

    def __init__(self, total: int, progress: Progress) -> None:
        self.total, self.progress = total, progress
        self.next_mark = 0.0
        self.started = time.monotonic()

    def update(self, done: int) -> None:
        measure = done / self.total if self.total else done / (50 * MB)
        if measure < self.next_mark:
            return
        rate = done / MB / max(time.monotonic() - self.started, 1e-3)
        if self.total:
            self.progress(
                f"  {measure:4.0%}  {done / MB:.1f}/{self.total / MB:.1f} MB ({rate:.1f} MB/s)"
            )
            self.next_mark = (int(measure * 10) + 1) / 10
        else:
            self.progress(f"  {done / MB:.1f} MB ({rate:.1f} MB/s)")
            self.next_mark = int(measure) + 1


def import_httpx() -> ModuleType:
    try:
        return importlib.import_module("httpx")
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "parley models fetch needs httpx: pip install 'parley[edge]' (or httpx)"
        ) from exc


def open_client(lib: ModuleType) -> httpx.Client:
    """An httpx client with short connect and read timeouts that follows redirects."""
    timeout_s = fetch_timeout()
    connect = min(CONNECT_TIMEOUT_S, timeout_s) if timeout_s else CONNECT_TIMEOUT_S
    timeout = lib.Timeout(timeout_s or READ_TIMEOUT_S, connect=connect)
    client: httpx.Client = lib.Client(
        timeout=timeout,
        follow_redirects=True,
        # identity: byte offsets for resuming must be those of the file itself
        headers={"User-Agent": "parley-models-fetch/1", "Accept-Encoding": "identity"},
    )
    return client


def fetch_timeout() -> float:
    """``$PARLEY_FETCH_TIMEOUT`` in seconds, or 0 for the defaults."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        value = float(raw) if raw else 0.0
    except ValueError:
        value = -1.0
    if value < 0:
        raise ConfigError(f"{TIMEOUT_ENV} must be a number of seconds, not '{raw}'")
    return value


def host_of(url: str) -> str:
    return urlsplit(url).netloc or url


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def transport_message(
    model: str, url: str, part: Path, exc: BaseException, unreachable: bool
) -> str:
    """One line for a transport failure: no connection, or a download that broke off."""
    host, reason = host_of(url), one_line(exc)
    if unreachable:
        return (
            f"cannot fetch model '{model}': {host} is unreachable - this machine is offline "
            f"or the host is down ({reason})"
        )
    got = part.stat().st_size if part.exists() else 0
    if got:
        return (
            f"downloading model '{model}' from {host} broke off after {got / MB:.1f} MB "
            f"({reason}); run the same command again to resume"
        )
    return (
        f"cannot fetch model '{model}': {host} stopped answering ({reason}); "
        "the host or the network is down, try again later"
    )


# --- install --------------------------------------------------------------------------------


def install(spec: ModelSpec, inputs: dict[str, Path], final: Path, progress: Progress) -> None:
    """Assemble the model's ``files`` in a scratch folder, then move it into place whole."""
    scratch = final.with_name(f".{spec.name}.partial")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        if spec.archive_files:
            if len(inputs) != 1:
                raise ConfigError(f"model '{spec.name}': archive_files needs exactly one url")
            (archive,) = inputs.values()
            progress(f"  extracting {len(spec.archive_files)} files from {archive.name}")
            extract_members(archive, spec.archive_files, spec.files, scratch)
        else:
            run_builder(spec, inputs, scratch, progress)
        missing = [f for f in spec.files.values() if not (scratch / f).is_file()]
        if missing:
            raise ModelBuildError(f"model '{spec.name}': installing it did not produce {missing}")
        shutil.rmtree(final, ignore_errors=True)
        scratch.rename(final)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def run_builder(spec: ModelSpec, inputs: dict[str, Path], out: Path, progress: Progress) -> None:
    """Run the manifest's builder on the downloads (a piper voice gets its sherpa metadata)."""
    from models.build import builder_for

    try:
        builder = builder_for(spec)
        if spec.builder != "piper":
            builder.build(inputs, out, progress)
            return
        built = out / ".built"
        built.mkdir()
        builder.build(inputs, built, progress)
        adopt_voice_files(built, out, spec.files)
    except ModuleNotFoundError as exc:
        raise ModelBuildError(
            f"model '{spec.name}' needs the '{exc.name}' package to install: "
            "pip install 'parley[build]'"
        ) from exc


def adopt_voice_files(built: Path, out: Path, files: dict[str, str]) -> None:
    """Move the voice builder's outputs to this model's names (by kind: .onnx, .onnx.json)."""
    kinds = {"model": "*.onnx", "config": "*.onnx.json", "tokens": "tokens.txt"}
    for role, pattern in kinds.items():
        found = sorted(built.glob(pattern))
        if len(found) != 1 or role not in files:
            raise ModelBuildError(f"the piper builder produced {len(found)} '{pattern}' files")
        found[0].replace(out / files[role])
    shutil.rmtree(built)
