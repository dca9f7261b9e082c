"""The reply's way to the speaker: a small jitter buffer and the ledger of what was heard.

The speaker callback pulls fixed frames; the downlink pushes ``tts.chunk`` audio as it
arrives. The ledger counts every sample actually handed to the speaker, per turn, so that a
barge-in can say exactly how much of the reply (and which words) the user heard. Thread-safe:
a real audio device pulls from its own thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from shared.audio import Samples


@dataclass
class _Turn:
    turn_id: int
    audio: list[Samples] = field(default_factory=list)
    buffered: int = 0          # samples queued, not yet played
    received: int = 0          # samples received in total
    played: int = 0            # samples handed to the speaker
    ended: bool = False        # tts.end seen
    released: bool = False     # allowed to play (end of turn confirmed)
    started: bool = False      # prebuffer reached, playing
    first_played_at: int | None = None
    last_played_at: int | None = None
    texts: list[tuple[int, str]] = field(default_factory=list)  # (sample offset, text)


@dataclass(frozen=True, slots=True)
class PlayoutStatus:
    """What the speaker did with a turn's reply."""

    turn_id: int
    samples_played: int
    samples_received: int
    first_played_at: int | None
    finished: bool


class Playout:
    """Jitter buffer + ledger for the reply audio (16 kHz float32)."""

    def __init__(self, prebuffer_samples: int = 640) -> None:
        self.prebuffer = prebuffer_samples
        self._lock = threading.Lock()
        self._turns: dict[int, _Turn] = {}
        self._order: list[int] = []
        self._paused = False

    # -- downlink side -------------------------------------------------------------------
    def push(self, turn_id: int, sample_offset: int, samples: Samples) -> None:
        """Queue reply audio; a chunk that repeats audio already received is trimmed."""
        with self._lock:
            turn = self._turn(turn_id)
            skip = max(0, turn.received - sample_offset)
            gap = max(0, sample_offset - turn.received)
            if gap:
                turn.audio.append(np.zeros(gap, dtype=np.float32))
            fresh = np.asarray(samples, dtype=np.float32)[skip:]
            if fresh.size:
                turn.audio.append(fresh)
            turn.received += gap + fresh.size
            turn.buffered += gap + fresh.size

    def push_text(self, turn_id: int, sample_offset: int, text: str) -> None:
        """Record that ``text`` is spoken from ``sample_offset`` on (for 'words heard')."""
        with self._lock:
            self._turn(turn_id).texts.append((sample_offset, text))

    def end(self, turn_id: int) -> None:
        with self._lock:
            self._turn(turn_id).ended = True

    def release(self, turn_id: int) -> None:
        """Allow a turn's audio to play (the edge confirmed the user's turn is over)."""
        with self._lock:
            self._turn(turn_id).released = True

    def discard(self, turn_id: int) -> PlayoutStatus:
        """Stop a turn now: drop its queued audio; returns what had been played."""
        with self._lock:
            turn = self._turn(turn_id)
            turn.audio.clear()
            turn.buffered = 0
            turn.ended = True
            if turn_id in self._order:
                self._order.remove(turn_id)
            return self._status(turn)

    def pause(self) -> None:
        """Silence the speaker at once, keeping the queued audio (a possible barge-in)."""
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        with self._lock:
            self._paused = False

    # -- speaker side --------------------------------------------------------------------
    def pull(self, n: int, at_sample: int = 0) -> Samples:
        """The next ``n`` samples for the speaker (silence when nothing may play)."""
        out = np.zeros(n, dtype=np.float32)
        with self._lock:
            if self._paused:
                return out
            filled = 0
            while filled < n and self._order:
                turn = self._turns[self._order[0]]
                if not self._playable(turn):
                    break
                filled += self._drain(turn, out[filled:], at_sample + filled)
                if turn.buffered == 0 and turn.ended:
                    self._order.pop(0)
                elif turn.buffered == 0:
                    break  # underrun: wait for more audio
        return out

    def status(self, turn_id: int) -> PlayoutStatus:
        with self._lock:
            return self._status(self._turn(turn_id))

    def heard_text(self, turn_id: int) -> str:
        """The reply text whose audio reached the speaker (words cut proportionally)."""
        with self._lock:
            turn = self._turn(turn_id)
            return heard_words(turn.texts, turn.played, turn.received if turn.ended else None)

    @property
    def active(self) -> bool:
        """True while some reply audio is queued or playing."""
        with self._lock:
            return any(self._turns[t].buffered > 0 or not self._turns[t].ended
                       for t in self._order if self._turns[t].released)

    # -- internals -----------------------------------------------------------------------
    def _turn(self, turn_id: int) -> _Turn:
        turn = self._turns.get(turn_id)
        if turn is None:
            turn = self._turns[turn_id] = _Turn(turn_id)
            self._order.append(turn_id)
            if len(self._turns) > 64:  # forget old ledgers: bounded memory
                for old in sorted(self._turns)[:-32]:
                    if old not in self._order:
                        del self._turns[old]
        return turn

    def _playable(self, turn: _Turn) -> bool:
        if not turn.released:
            return False
        if not turn.started and (turn.buffered >= self.prebuffer or turn.ended):
            turn.started = True
        return turn.started and turn.buffered > 0

    @staticmethod
    def _drain(turn: _Turn, out: Samples, at_sample: int) -> int:
        filled = 0
        while filled < out.size and turn.audio:
            head = turn.audio[0]
            take = min(head.size, out.size - filled)
            out[filled: filled + take] = head[:take]
            if take == head.size:
                turn.audio.pop(0)
            else:
                turn.audio[0] = head[take:]
            filled += take
        if filled:
            if turn.first_played_at is None:
                turn.first_played_at = at_sample
            turn.last_played_at = at_sample + filled
            turn.played += filled
            turn.buffered -= filled
        return filled

    @staticmethod
    def _status(turn: _Turn) -> PlayoutStatus:
        return PlayoutStatus(turn_id=turn.turn_id, samples_played=turn.played,
                             samples_received=turn.received,
                             first_played_at=turn.first_played_at,
                             finished=turn.ended and turn.buffered == 0)


def heard_words(texts: list[tuple[int, str]], played: int, total: int | None) -> str:
    """Words of ``texts`` (sorted by sample offset) covered by ``played`` samples.

    A text's span runs to the next text's offset (or ``total``); within a span that was cut,
    words are counted in proportion to the share of the span played.
    """
    spans = sorted(texts)
    words: list[str] = []
    for i, (start, text) in enumerate(spans):
        if played <= start:
            break
        end = spans[i + 1][0] if i + 1 < len(spans) else total
        parts = text.split()
        if end is None or played >= end:
            words.extend(parts)
            continue
        share = (played - start) / max(1, end - start)
        words.extend(parts[: int(len(parts) * share)])
    return " ".join(words)
