"""Fast barge-in: silence the speaker on a voice onset, before the VAD has confirmed it.

The silero VAD needs two 32 ms windows to confirm speech; added to the speaker's own buffer
that is too slow for "the speaker falls silent within 100 ms of the user's onset". So while
the reply plays, this gate watches the echo-cancelled mic for a sudden rise in level above
the residual-echo floor and *ducks* (pauses) the playout at once. If the VAD confirms speech
the agent turns the duck into a barge-in; if not, playback resumes where it paused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from shared.audio import Samples, rms_db

Verdict = Literal["duck", "resume", None]


@dataclass(frozen=True, slots=True)
class OnsetConfig:
    rise_db: float = 12.0  # above the floor of the cleaned mic during playback
    min_level_db: float = -50.0  # absolute level a voice must reach (dBFS)
    frames: int = 2  # consecutive 10 ms frames above both
    confirm_frames: int = 20  # wait this long for the VAD before resuming (200 ms)
    floor_rise_db_per_frame: float = 0.05  # the floor follows slowly up, fast down


class OnsetGate:
    """Decides per 10 ms frame whether to duck the playout, or resume it."""

    def __init__(self, config: OnsetConfig | None = None) -> None:
        self.c = config or OnsetConfig()
        self.floor_db = -90.0
        self._above = 0
        self._ducked_for: int | None = None
        self.ducks = 0  # how often the speaker was paused (false alarms resume)

    @property
    def ducked(self) -> bool:
        return self._ducked_for is not None

    def push(self, clean: Samples, playing: bool, speech: bool) -> Verdict:
        level = rms_db(np.asarray(clean, dtype=np.float32))
        if self._ducked_for is not None:
            return self._while_ducked(speech)
        onset = self._onset(level)
        self._follow_floor(level)
        if playing and onset:
            self._ducked_for = 0
            self.ducks += 1
            return "duck"
        return None

    def _onset(self, level: float) -> bool:
        loud = level > max(self.floor_db + self.c.rise_db, self.c.min_level_db)
        self._above = self._above + 1 if loud else 0
        return self._above >= self.c.frames

    def _follow_floor(self, level: float) -> None:
        if level < self.floor_db:
            self.floor_db = level
        elif self._above == 0:
            self.floor_db += min(self.c.floor_rise_db_per_frame, level - self.floor_db)

    def _while_ducked(self, speech: bool) -> Verdict:
        assert self._ducked_for is not None
        if speech:
            # Confirmed: the agent has already stopped the reply (barge-in) or withdrawn it
            # (the user continued their turn), so un-pausing plays nothing of it.
            self._ducked_for = None
            self._above = 0
            return "resume"
        self._ducked_for += 1
        if self._ducked_for >= self.c.confirm_frames:
            self._ducked_for = None
            self._above = 0
            return "resume"
        return None
