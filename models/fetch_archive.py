"""Take named files out of a downloaded model archive (tar.bz2 / tar.gz / tar.xz / zip), safely.

Only the regular-file members that the manifest names are read, and what they are written to
comes from the manifest too (``files``), never from the archive: member paths cannot choose
where anything lands. Absolute, ``..`` and backslash paths are refused, and so are links and
other special members standing where a named file should be.
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO

from shared.errors import ConfigError, ModelBuildError

CHUNK = 1 << 20


def extract_members(
    archive: Path, members: dict[str, str], files: dict[str, str], dest: Path
) -> None:
    """Copy the archive's ``members`` (role -> path inside) to ``dest / files[role]``."""
    if set(members) - set(files):
        raise ConfigError(f"archive_files roles {sorted(members)} are not all in files")
    wanted = {safe_member(archive, path): dest / files[role] for role, path in members.items()}
    try:
        if zipfile.is_zipfile(archive):
            found = extract_from_zip(archive, wanted)
        else:
            found = extract_from_tar(archive, wanted)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise ModelBuildError(f"{archive.name} is not a readable archive ({detail})") from exc
    missing = sorted(set(wanted) - found)
    if missing:
        raise ModelBuildError(f"{archive.name} does not contain {missing}")


def safe_member(archive: Path, path: str) -> str:
    """The normalized member path; ``ModelBuildError`` for absolute or escaping paths."""
    name = normalize_member(path)
    parts = PurePosixPath(name).parts
    if not name or path.startswith(("/", "\\")) or ".." in parts or "\\" in path or ":" in name:
        raise ModelBuildError(f"{archive.name}: refusing unsafe archive member path '{path}'")
    return name


def normalize_member(path: str) -> str:
    while path.startswith("./"):
        path = path[2:]
    return path


def extract_from_tar(archive: Path, wanted: dict[str, Path]) -> set[str]:
    found: set[str] = set()
    with tarfile.open(archive, "r|*") as tar:  # one sequential pass, even through bz2
        for member in tar:
            name = normalize_member(member.name)
            if name not in wanted:
                continue
            fileobj = tar.extractfile(member) if member.isfile() else None
            if fileobj is None:
                raise ModelBuildError(f"{archive.name}: member '{name}' is not a regular file")
            copy_stream(fileobj, wanted[name])
            found.add(name)
            if found == set(wanted):
                break
    return found


def extract_from_zip(archive: Path, wanted: dict[str, Path]) -> set[str]:
    found: set[str] = set()
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            name = normalize_member(info.filename)
            if name not in wanted:
                continue
            is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
            if info.is_dir() or is_link:
                raise ModelBuildError(f"{archive.name}: member '{name}' is not a regular file")
            with zf.open(info) as fileobj:
                copy_stream(fileobj, wanted[name])
            found.add(name)
    return found


def copy_stream(source: IO[bytes], target: Path) -> None:
    with target.open("wb") as out:
        shutil.copyfileobj(source, out, CHUNK)
