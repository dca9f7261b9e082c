"""Safe extraction of named members from model archives (tar.* and zip)."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path
from typing import Literal

import pytest

from models.fetch_archive import extract_members
from shared.errors import ModelBuildError

FILES = {"model": "model.onnx", "tokens": "tokens.txt"}
MEMBERS = {"model": "pack/model.onnx", "tokens": "./pack/tokens.txt"}


TarMode = Literal["w:gz", "w:bz2", "w:xz"]


def write_tar(path: Path, members: dict[str, bytes], mode: TarMode = "w:gz",
              links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def write_zip(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    out = tmp_path / "work" / "out"
    out.mkdir(parents=True)
    return out


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz"])
def test_tar_members_land_under_the_manifest_names(
    tmp_path: Path, dest: Path, mode: TarMode
) -> None:
    archive = write_tar(tmp_path / "m.tar", {"pack/model.onnx": b"m", "pack/tokens.txt": b"t",
                                             "pack/other.bin": b"x"}, mode)
    extract_members(archive, MEMBERS, FILES, dest)
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == {"model.onnx": b"m",
                                                                "tokens.txt": b"t"}


def test_zip_members_land_under_the_manifest_names(tmp_path: Path, dest: Path) -> None:
    archive = write_zip(tmp_path / "m.zip", {"pack/model.onnx": b"m", "pack/tokens.txt": b"t"})
    extract_members(archive, MEMBERS, FILES, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["model.onnx", "tokens.txt"]


@pytest.mark.parametrize("member", ["../model.onnx", "pack/../../model.onnx", "/etc/passwd",
                                    "C:/model.onnx", "pack\\..\\model.onnx", ""])
def test_escaping_member_paths_are_refused(tmp_path: Path, dest: Path, member: str) -> None:
    archive = write_tar(tmp_path / "m.tgz", {"pack/model.onnx": b"m"})
    with pytest.raises(ModelBuildError, match="unsafe archive member path"):
        extract_members(archive, {"model": member}, FILES, dest)
    assert list(dest.iterdir()) == []


def test_escaping_members_in_the_archive_are_never_written(tmp_path: Path, dest: Path) -> None:
    archive = write_tar(tmp_path / "m.tgz", {"../../escaped.txt": b"x", "/abs-escaped.txt": b"x",
                                             "pack/model.onnx": b"m", "pack/tokens.txt": b"t"})
    extract_members(archive, MEMBERS, FILES, dest)
    assert not list(tmp_path.rglob("*escaped.txt"))
    assert not Path("/abs-escaped.txt").exists()


def test_tar_link_standing_for_a_named_member_is_refused(tmp_path: Path, dest: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"do not copy")
    archive = write_tar(tmp_path / "m.tgz", {"pack/model.onnx": b"m"},
                        links={"pack/tokens.txt": str(secret)})
    with pytest.raises(ModelBuildError, match=r"'pack/tokens\.txt' is not a regular file"):
        extract_members(archive, MEMBERS, FILES, dest)
    assert not (dest / "tokens.txt").exists()


def test_zip_link_standing_for_a_named_member_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = write_zip(tmp_path / "m.zip", {"pack/model.onnx": b"m"},
                        links={"pack/tokens.txt": "/etc/passwd"})
    with pytest.raises(ModelBuildError, match="is not a regular file"):
        extract_members(archive, MEMBERS, FILES, dest)


def test_missing_member_and_non_archive_are_one_line(tmp_path: Path, dest: Path) -> None:
    archive = write_tar(tmp_path / "m.tgz", {"pack/model.onnx": b"m"})
    with pytest.raises(ModelBuildError, match=r"does not contain \['pack/tokens.txt'\]"):
        extract_members(archive, MEMBERS, FILES, dest)
    junk = tmp_path / "junk.tar.bz2"
    junk.write_bytes(b"<html>rate limited</html>")
    unreadable = r"junk\.tar\.bz2 is not a readable archive"
    with pytest.raises(ModelBuildError, match=unreadable) as failed:
        extract_members(junk, MEMBERS, FILES, dest)
    assert "\n" not in str(failed.value)
