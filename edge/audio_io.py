"""Microphone and speaker: one duplex clock ticking in 10 ms frames.

Every tick the device hands the pipeline one mic frame together with the speaker frame that
played during the same 10 ms — the echo canceller's far-end reference is therefore exactly
what went to the speaker, on the mic's timeline. Two implementations:

- ``FileDuplex``: mic from a WAV (paced in real time, or as fast as possible), speaker into a
  WAV on the mic's timeline (its sample 0 is the mic's sample 0; silence where nothing
  played); an optional simulated room adds the speaker's echo to the mic.
- ``SoundDeviceDuplex``: a live sounddevice (PortAudio) stream at the device's rate,
  resampled to 16 kHz.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from shared.audio import PROCESSING_RATE, Samples, read_wav, write_wav

FRAME = PROCESSING_RATE // 100  # 10 ms


@dataclass(frozen=True, slots=True)
class DuplexFrame:
    """10 ms of mic audio and the speaker audio of the same 10 ms."""

    index: int  # frame number; sample position = index * FRAME
    mic: Samples
    speaker: Samples

    @property
    def sample(self) -> int:
        return self.index * FRAME


SpeakerSource = Callable[[int, int], Samples]
"""``pull(n_samples, at_sample)`` -> what the speaker plays next (the playout's ``pull``)."""


class EchoPath(Protocol):
    """A simulated acoustic path from the speaker to the mic (see ``edge.room``)."""

    def push(self, speaker_frame: Samples) -> Samples: ...


class DuplexDevice(abc.ABC):
    """A mic and a speaker on one clock."""

    @abc.abstractmethod
    def frames(self, speaker: SpeakerSource) -> AsyncIterator[DuplexFrame]:
        """Yield one ``DuplexFrame`` per 10 ms until the input ends or ``stop()``."""

    @abc.abstractmethod
    def stop(self) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to flush by default
        """Flush outputs (e.g. the speaker WAV)."""


class FileDuplex(DuplexDevice):
    """Mic from a file, speaker into a file, on one timeline."""

    def __init__(
        self,
        mic: Samples | str | Path,
        speaker_out: str | Path | None = None,
        realtime: bool = True,
        echo: EchoPath | None = None,
        tail_s: float = 0.0,
        until: Callable[[], bool] | None = None,
        max_tail_s: float = 30.0,
        far: Samples | str | Path | None = None,
    ) -> None:
        self.mic = read_wav(mic) if isinstance(mic, (str, Path)) else np.asarray(mic, np.float32)
        self.speaker_out = Path(speaker_out) if speaker_out else None
        self.realtime = realtime
        self.echo = echo
        self.tail_s = tail_s
        self.until = until  # after the mic file ends, keep ticking until this returns True
        self.max_tail_s = max_tail_s
        # A recording of what the speaker played while the mic was recorded (offline runs):
        # it replaces the live playout as the speaker's output.
        self.far = (read_wav(far) if isinstance(far, (str, Path))
                    else None if far is None else np.asarray(far, np.float32))
        self._speaker: list[Samples] = []
        self._stopped = False

    @property
    def speaker_track(self) -> Samples:
        return np.concatenate(self._speaker) if self._speaker else np.zeros(0, np.float32)

    def stop(self) -> None:
        self._stopped = True

    async def frames(self, speaker: SpeakerSource) -> AsyncIterator[DuplexFrame]:
        n_mic = -(-self.mic.size // FRAME)
        t0 = time.perf_counter()
        index = 0
        while not self._stopped and not self._input_done(index, n_mic):
            out = speaker(FRAME, index * FRAME) if self.far is None else self._far_frame(index)
            self._speaker.append(out)
            mic = self._mic_frame(index)
            if self.echo is not None:
                mic = mic + self.echo.push(out)
            yield DuplexFrame(index=index, mic=mic, speaker=out)
            index += 1
            if self.realtime:
                delay = t0 + index * FRAME / PROCESSING_RATE - time.perf_counter()
                await asyncio.sleep(max(0.0, delay))
            elif index % 10 == 0:
                await asyncio.sleep(0)  # let other tasks run

    def _input_done(self, index: int, n_mic: int) -> bool:
        if index < n_mic:
            return False
        extra_s = (index - n_mic) * FRAME / PROCESSING_RATE
        if extra_s >= self.max_tail_s:
            return True
        if extra_s < self.tail_s:
            return False
        return self.until is None or self.until()

    def _mic_frame(self, index: int) -> Samples:
        return _frame_of(self.mic, index)

    def _far_frame(self, index: int) -> Samples:
        assert self.far is not None
        return _frame_of(self.far, index)

    def close(self) -> None:
        if self.speaker_out is not None:
            write_wav(self.speaker_out, self.speaker_track)


def _frame_of(signal: Samples, index: int) -> Samples:
    frame = signal[index * FRAME: (index + 1) * FRAME]
    if frame.size < FRAME:
        frame = np.concatenate([frame, np.zeros(FRAME - frame.size, np.float32)])
    return frame
