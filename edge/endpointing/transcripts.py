"""Where the benchmark's partial transcripts come from: the real recognizer, or the known words.

``RecognizerTranscripts`` runs the edge's recognizer (whisper through sherpa-onnx) on the audio
of the turn so far, exactly what the edge decodes at a pause, and caches text and compute time
on disk (decoding the set is the slow part of the benchmark). ``KnownTranscripts`` is the
oracle for development and unit tests: the words said before the cut, with the punctuation of
the pieces that ended.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge.endpointing.eval_set import EvalItem
from edge.endpointing.simulate import CostModel
from shared.audio import PROCESSING_RATE, Samples


class KnownTranscripts:
    """The words said up to a sample: whole pieces that ended, and a share of a cut one."""

    def transcribe(self, item: EvalItem, start: int, upto: int) -> str:
        words: list[str] = []
        for span in item.spans:
            if span.end <= upto:
                words.extend(span.text.split())
            elif span.start < upto:
                said = span.text.rstrip(".,!?").split()
                words.extend(said[: int(len(said) * (upto - span.start) / (span.end - span.start))])
        return " ".join(words)


class RecognizerTranscripts:
    """Transcripts of the real recognizer, cached in a JSON file with their compute time."""

    def __init__(self, transcribe: Callable[[Samples], str],
                 cache_path: Path | None = None) -> None:
        self._transcribe = transcribe
        self.cache_path = cache_path
        self._cache: dict[str, list[float | str]] = {}
        if cache_path is not None and cache_path.is_file():
            self._cache = json.loads(cache_path.read_text(encoding="utf-8"))
        self._dirty = 0

    def transcribe(self, item: EvalItem, start: int, upto: int) -> str:
        key = _key(item, start, upto)
        hit = self._cache.get(key)
        if hit is None:
            audio = item.audio[start:upto]
            t0 = time.perf_counter()
            text = self._transcribe(audio)
            hit = [text, time.perf_counter() - t0, audio.size / PROCESSING_RATE]
            self._cache[key] = hit
            self._dirty += 1
            if self._dirty >= 20:
                self.save()
        return str(hit[0])

    def save(self) -> None:
        """Write the new transcripts to the cache file (if there is one)."""
        if self._dirty and self.cache_path is not None:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._cache), encoding="utf-8")
            tmp.replace(self.cache_path)
            self._dirty = 0

    def timed_cost(self, clips: list[Samples], repeats: int = 3) -> CostModel:
        """Decode seconds as a + b x audio seconds: a least-squares fit over ``clips``, each
        decoded ``repeats`` times keeping its fastest run (the machine's speed when the
        recognizer gets its threads, rather than the moments another process took them)."""
        points = []
        for clip in clips:
            runs = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                self._transcribe(clip)
                runs.append(time.perf_counter() - t0)
            points.append((clip.size / PROCESSING_RATE, min(runs)))
        return fit_cost(points)

    def median_call_s(self) -> float:
        """The median compute time of the cached calls (as they happened)."""
        calls = [float(v[1]) for v in self._cache.values()]
        return float(np.median(calls)) if calls else 0.0


def fit_cost(points: list[tuple[float, float]]) -> CostModel:
    """``seconds of compute = fixed + per_second x audio seconds``, a Theil-Sen fit (median
    of the pairwise slopes): a clip that sends whisper into a repetition loop costs several
    times the others and must not drag the line."""
    data = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if data.shape[0] == 0:
        return CostModel(fixed=0.0, per_second=0.0)
    x, y = data[:, 0], data[:, 1]
    i, j = np.triu_indices(x.size, k=1)
    apart = np.abs(x[j] - x[i]) > 1e-6
    slopes = (y[j] - y[i])[apart] / (x[j] - x[i])[apart]
    per_second = max(0.0, float(np.median(slopes))) if slopes.size else 0.0
    fixed = max(0.0, float(np.median(y - per_second * x)))
    return CostModel(fixed=fixed, per_second=per_second)


def _key(item: EvalItem, start: int, upto: int) -> str:
    digest = hashlib.sha1(item.audio[start:upto].tobytes()).hexdigest()[:16]
    return f"{item.item_id}:{start}:{upto}:{digest}"
