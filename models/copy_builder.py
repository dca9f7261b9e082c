"""The trivial builder: the file inside the wheel is already what the runtime loads."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

BUILDER_VERSION = "1"


def build(inputs: dict[str, Path], out_dir: Path, progress: Callable[[str], None]) -> None:
    for name, path in inputs.items():
        shutil.move(str(path), out_dir / name)
