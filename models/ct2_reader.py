"""Read a CTranslate2 ``model.bin`` into numpy arrays (no CTranslate2 needed).

The layout (format version 6): little-endian u32 version, a u16-length-prefixed spec name,
u32 revision, u32 variable count, then per variable a u16-length name, u8 rank, u32 dims,
u8 data type, u32 byte count and the raw data; then u32 alias count and (alias, target) name
pairs. Strings carry a trailing NUL.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from shared.errors import ModelBuildError

# CTranslate2's DataType enum, in declaration order.
_DTYPES: dict[int, np.dtype[np.generic]] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
}
SUPPORTED_VERSION = 6


@dataclass(frozen=True, slots=True)
class CT2Model:
    """The spec name, revision and every variable (aliases resolved) of a model.bin."""

    spec: str
    revision: int
    variables: dict[str, npt.NDArray[np.generic]]

    def float32(self, name: str) -> npt.NDArray[np.float32]:
        """A variable as float32; ``ModelBuildError`` when it is missing."""
        if name not in self.variables:
            raise ModelBuildError(f"{self.spec} model.bin has no variable '{name}'")
        return self.variables[name].astype(np.float32)

    def scalar(self, name: str) -> int:
        return int(self.variables[name].reshape(-1)[0])


def read_ct2(path: Path) -> CT2Model:
    """Parse ``path``; ``ModelBuildError`` when it is not a CTranslate2 v6 model file."""
    try:
        with path.open("rb") as f:
            return _parse(f)
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        raise ModelBuildError(f"{path} is not a readable CTranslate2 model ({exc})") from exc


def _parse(f: BinaryIO) -> CT2Model:
    version = _u32(f)
    if version != SUPPORTED_VERSION:
        raise ModelBuildError(f"CTranslate2 format version {version} is not supported "
                              f"(expected {SUPPORTED_VERSION})")
    spec = _string(f)
    revision = _u32(f)
    variables: dict[str, npt.NDArray[np.generic]] = {}
    for _ in range(_u32(f)):
        name = _string(f)
        rank = f.read(1)[0]
        dims = tuple(_u32(f) for _ in range(rank))
        code = f.read(1)[0]
        nbytes = _u32(f)
        if code not in _DTYPES:
            raise ModelBuildError(f"variable '{name}' has unknown data type code {code}")
        data = np.frombuffer(_exact(f, nbytes), dtype=_DTYPES[code])
        variables[name] = data.reshape(dims) if dims else data
    for _ in range(_u32(f)):
        alias, target = _string(f), _string(f)
        variables[alias] = variables[target]
    return CT2Model(spec=spec, revision=revision, variables=variables)


def _exact(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ValueError(f"file ends early (wanted {n} bytes, got {len(data)})")
    return data


def _u32(f: BinaryIO) -> int:
    value: int = struct.unpack("<I", _exact(f, 4))[0]
    return value


def _string(f: BinaryIO) -> str:
    (length,) = struct.unpack("<H", _exact(f, 2))
    return _exact(f, length).decode("utf-8").rstrip("\0")
