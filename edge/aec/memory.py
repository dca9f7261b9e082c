"""The echo path a canceller has learned, kept across restarts.

A kiosk or a Pi on a shelf keeps its speaker and microphone where they are, but the agent
restarts (updates, power cuts, a nightly reboot). From a cold start the linear filter needs
seconds of the agent's own voice to learn the room; a user who talks over the first reply
meanwhile is recognized worse (``parley bench aec``: the "cold" against the "converged" WER).
:class:`LearnedEchoPath` is what it takes to start warm instead: the filter's coefficients
and how sure it was of them, and the speaker -> mic delay they are aligned to.

A remembered path is only a guess about today's room: the canceller starts as from cold and
runs the remembered path beside it, letting it take over only once it has proved itself on
this room's echo (see :meth:`edge.aec.linear.LinearEchoStage.remember`).

Stored as a small ``.npz`` file (~100 KB), written atomically; a file that is not one, or
one made for another filter shape, is refused with one line (:class:`EchoMemoryError`).
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.aec.base import EchoCanceller
from shared.errors import ParleyError

log = logging.getLogger(__name__)
_VERSION = 1


class EchoMemoryError(ParleyError):
    """A remembered echo path cannot be read or written, or does not fit this canceller."""


@dataclass(frozen=True, slots=True, eq=False)
class LearnedEchoPath:
    """A learned echo path: ``coefficients`` (complex, partitions x bins) read the far end
    from the frame that the canceller derives from ``delay_samples`` (the speaker -> mic
    delay, 16 kHz samples); ``uncertainty`` (same shape) is how sure the filter was."""

    delay_samples: int
    coefficients: np.ndarray
    uncertainty: np.ndarray

    def __post_init__(self) -> None:
        w, p = self.coefficients, self.uncertainty
        if not np.iscomplexobj(w) or np.iscomplexobj(p):
            raise EchoMemoryError("remembered echo path: coefficients must be complex and the "
                                  f"uncertainty real (got {w.dtype}, {p.dtype})")
        if w.ndim != 2 or p.shape != w.shape:
            raise EchoMemoryError("remembered echo path: coefficients and uncertainty do not "
                                  f"match ({w.shape}, {p.shape})")
        if not (np.isfinite(w).all() and np.isfinite(p).all() and (p >= 0).all()):
            raise EchoMemoryError("remembered echo path: non-finite or negative values")
        if not 0 <= self.delay_samples <= 16_000:
            raise EchoMemoryError(f"remembered echo path: delay {self.delay_samples} samples "
                                  "is out of range")


def save_echo_path(echo: LearnedEchoPath, path: Path) -> None:
    """Write ``echo`` to ``path``, replaced atomically (written beside it, flushed to disk,
    renamed): a crash or a power cut leaves the old file or the new one, never half of one."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, version=np.int64(_VERSION), delay_samples=np.int64(echo.delay_samples),
                     coefficients=echo.coefficients, uncertainty=echo.uncertainty)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise EchoMemoryError(f"cannot write the echo path to {path}: "
                              f"{exc.strerror or exc}") from exc


def load_echo_path(path: Path) -> LearnedEchoPath:
    """Read what :func:`save_echo_path` wrote; :class:`EchoMemoryError` if it is not that
    (:class:`FileNotFoundError` if there is no file)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if int(data["version"]) != _VERSION:
                raise EchoMemoryError(f"{path}: echo path format {int(data['version'])}, "
                                      f"this version reads {_VERSION}")
            return LearnedEchoPath(int(data["delay_samples"]),
                                   np.asarray(data["coefficients"]),
                                   np.asarray(data["uncertainty"]))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise EchoMemoryError(f"cannot read the echo path {path}: "
                              f"{exc.strerror or exc}") from exc
    except (EOFError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as exc:
        raise EchoMemoryError(f"{path} is not a saved echo path ({exc})") from exc


def recall_echo_path(canceller: object, path: Path | None) -> bool:
    """Start ``canceller`` from the echo path kept in ``path``, if there is one (and
    ``canceller`` is an :class:`~edge.aec.base.EchoCanceller`). A file that cannot be used
    costs one log line and a cold start, never the session."""
    if not isinstance(canceller, EchoCanceller) or path is None:
        return False
    try:
        canceller.remember(load_echo_path(path))
    except FileNotFoundError:
        return False  # nothing kept yet
    except EchoMemoryError as exc:
        log.warning("starting the echo canceller cold: %s", exc)
        return False
    log.info("echo canceller: starting from the echo path in %s", path)
    return True


def keep_echo_path(canceller: object, path: Path | None) -> bool:
    """Write what ``canceller`` has learned to ``path`` (see
    :meth:`~edge.aec.base.EchoCanceller.echo_path` for when there is nothing to write yet;
    nothing either if it is not an :class:`~edge.aec.base.EchoCanceller`); a failure costs
    one log line."""
    if not isinstance(canceller, EchoCanceller) or path is None:
        return False
    try:
        echo = canceller.echo_path()
        if echo is None:
            return False
        save_echo_path(echo, path)
    except EchoMemoryError as exc:
        log.warning("%s", exc)
        return False
    return True
