"""Pure audio helpers around Whisper decoding: silence gate, quiet-point splitting, speech
chunks from VAD events, and the frame alignment that makes sherpa-onnx see the log-mel frames
Whisper itself computes."""

from __future__ import annotations

import numpy as np

from edge.vad import SpeechEnded, SpeechStarted, VadEvent
from shared.audio import PROCESSING_RATE, Samples

HOP = 160  # Whisper's log-mel hop at 16 kHz (10 ms)
FRAME_S = 0.03  # window of the short-term level used by the gate and the splitter


def frame_levels_db(samples: Samples, frame_s: float = FRAME_S) -> np.ndarray:
    """Short-term RMS level (dBFS) of consecutive non-overlapping frames."""
    size = max(1, int(frame_s * PROCESSING_RATE))
    count = samples.size // size
    if count == 0:
        return np.full(1, _db(float(np.mean(np.square(samples, dtype=np.float64)))
                              if samples.size else 0.0))
    frames = samples[: count * size].reshape(count, size).astype(np.float64)
    return np.array([_db(p) for p in np.mean(np.square(frames), axis=1)])


def _db(power: float) -> float:
    return 10.0 * float(np.log10(max(power, 1e-12)))


def is_silent(samples: Samples, floor_db: float) -> bool:
    """True when no short-term frame reaches ``floor_db`` (or there is almost no audio)."""
    if samples.size < HOP:
        return True
    return float(frame_levels_db(samples).max()) < floor_db


def split_at_quiet_points(samples: Samples, max_s: float, search_s: float = 5.0) -> list[Samples]:
    """Cut audio longer than ``max_s`` into pieces no longer than ``max_s``.

    Each cut falls on the quietest short-term frame of the last ``search_s`` seconds before
    the limit, so words are not split where a pause exists nearby.
    """
    limit = int(max_s * PROCESSING_RATE)
    pieces: list[Samples] = []
    start = 0
    while samples.size - start > limit:
        window_start = start + max(0, limit - int(search_s * PROCESSING_RATE))
        window = samples[window_start: start + limit]
        size = int(FRAME_S * PROCESSING_RATE)
        levels = frame_levels_db(window)
        quietest = levels.size - 1 - int(np.argmin(levels[::-1]))  # the latest of equals
        cut = window_start + quietest * size + size // 2
        pieces.append(samples[start:cut])
        start = cut
    pieces.append(samples[start:])
    return pieces


def align_to_whisper_frames(samples: Samples) -> Samples:
    """Shift and trim audio so sherpa-onnx's fbank frames equal Whisper's STFT frames.

    kaldi-native-fbank centres frame ``i`` at sample ``160 i + 80``; Whisper's STFT centres
    it at ``160 i`` (reflect padding) and keeps ``len // 160`` frames. Prepending 80
    reflected samples and ending the audio one sample before the last whole hop gives the
    same frames and the same count (only the first frame's edge differs slightly).
    """
    frames = samples.size // HOP
    if frames < 2:
        return np.asarray(samples, dtype=np.float32)
    head = samples[HOP // 2: 0: -1]
    return np.concatenate([head, samples[: frames * HOP - 1]]).astype(np.float32)


class SpeechChunker:
    """Cuts a stream into speech chunks for an offline recognizer, from VAD events.

    Speech regions separated by less than ``merge_gap_s`` share a chunk; each chunk keeps
    ``pad_s`` of audio around its speech; a chunk that would pass ``max_s`` (continuous
    speech) is cut at its quietest point. Only the open chunk is buffered, so memory stays
    bounded however long the stream is. Samples are counted from the first ``push``.
    """

    def __init__(self, max_s: float = 24.0, pad_s: float = 0.3, merge_gap_s: float = 1.0) -> None:
        self._max = int(max_s * PROCESSING_RATE)
        self._pad = int(pad_s * PROCESSING_RATE)
        self._gap = int(merge_gap_s * PROCESSING_RATE)
        self._buffer = np.zeros(0, dtype=np.float32)
        self._origin = 0  # stream position of self._buffer[0]
        self._chunk_start: int | None = None
        self._speaking = False
        self._last_end = 0

    @property
    def _now(self) -> int:
        return self._origin + self._buffer.size

    def push(self, samples: Samples, events: list[VadEvent]) -> list[Samples]:
        """Add audio and the VAD events it produced; return the chunks now complete."""
        self._buffer = np.concatenate([self._buffer, np.asarray(samples, dtype=np.float32)])
        for event in events:
            self._on_event(event)
        out: list[Samples] = []
        if self._chunk_start is None:
            self._drop_before(self._now - self._pad)
        elif not self._speaking and self._now - self._last_end > self._gap:
            out.append(self._emit(self._last_end + self._pad))
        while self._chunk_start is not None and self._now - self._chunk_start > self._max:
            out.append(self._cut_long())
        return out

    def finish(self) -> list[Samples]:
        """The chunk still open at the end of the stream, if any."""
        if self._chunk_start is None:
            return []
        end = self._now if self._speaking else min(self._now, self._last_end + self._pad)
        return split_at_quiet_points(self._emit(end), self._max / PROCESSING_RATE)

    def _on_event(self, event: VadEvent) -> None:
        if isinstance(event, SpeechStarted):
            self._speaking = True
            if self._chunk_start is None:
                self._chunk_start = max(self._origin, event.sample - self._pad)
        elif isinstance(event, SpeechEnded) and self._chunk_start is not None:
            self._speaking = False
            self._last_end = max(event.sample, self._chunk_start)

    def _emit(self, end: int) -> Samples:
        assert self._chunk_start is not None
        chunk = self._buffer[self._chunk_start - self._origin: end - self._origin].copy()
        self._chunk_start = None
        self._drop_before(end)
        return chunk

    def _cut_long(self) -> Samples:
        assert self._chunk_start is not None
        span = self._buffer[self._chunk_start - self._origin:]
        first = split_at_quiet_points(span, self._max / PROCESSING_RATE)[0]
        cut = self._chunk_start + first.size
        chunk = first.copy()
        self._drop_before(cut)
        self._chunk_start = cut
        return chunk

    def _drop_before(self, position: int) -> None:
        drop = min(max(0, position - self._origin), self._buffer.size)
        self._buffer = self._buffer[drop:]
        self._origin += drop
