"""``parley edge calibrate``: learn the room's echo before the first conversation.

From a cold start the echo canceller learns the room from the agent's first reply; a user who
talks over that reply meets a filter that has hardly begun, and loses words (see "Echo
cancellation" in the README). After a restart it starts from the echo path it kept
(:mod:`edge.aec.memory`). Calibrating gives the very first start that too: the speaker plays a
few seconds of pink noise (every frequency at once, unlike speech's sustained harmonics), the
canceller learns the path from it, and the path is kept where ``parley edge run`` looks for it
(setting ``aec_memory``). It is an ordinary kept path: the live run still makes it prove
itself on the room's echo before relying on it, and drops it if the room changed.

The check is what a user would notice: the noise must be heard (its echo well above the
room's own noise, measured over a quiet lead-in) and cancelled (another sound in the room, or
a distorting speaker, leaves much of it); otherwise nothing is kept and the one-line error
says what to look at.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import signal

from edge.aec import EchoCanceller
from edge.aec.erle import erle_db
from edge.aec.memory import save_echo_path
from edge.audio_io import FRAME, DuplexDevice
from shared.audio import PROCESSING_RATE, Samples, rms_db
from shared.errors import ParleyError

LEAD_IN_S = 0.5  # quiet before the noise: the room's own level
SETTLE_S = 0.5  # quiet after it: the room's ring-out
FADE_S = 0.05
JUDGE_S = 2.0  # the echo left is measured over the noise's last seconds
SECONDS = 6.0  # how long the noise plays, by default
LEVEL_DB = -24.0  # its level, dBFS RMS: about the agent's voice
# The noise's echo must stand this far above the room's own noise to learn a path from it,
# and the learned path must take this much of it away over the last seconds (the linear
# stage's output, 22-34 dB in the 60 bench rooms; with white noise 30 dB under the noise from
# the second second on, 3-5 dB): less means another sound in the room, or a speaker
# distorting. Judged before the suppressor, which would hide a path not learned: it removes
# what the filter is unsure of, another sound included (17-20 dB "cancelled" with that noise).
MIN_HEARD_DB = 15.0
MIN_CANCELLED_DB = 12.0


class CalibrationError(ParleyError):
    """The calibration sound was not heard, or its echo was not learned: nothing was kept."""


@dataclass(frozen=True, slots=True)
class Calibration:
    """What a calibration learned: the speaker -> mic delay, how far the noise's echo stood
    above the room's own noise, and how much of it the learned path removed over the noise's
    last ``JUDGE_S`` (the recognizer's copy: the linear stage's output, no suppression)."""

    delay_ms: float
    heard_db: float
    cancelled_db: float

    def summary(self) -> str:
        return (f"delay {self.delay_ms:.0f} ms, the noise's echo {self.heard_db:.0f} dB above "
                f"the room's noise, {self.cancelled_db:.0f} dB of it cancelled over its last "
                f"{JUDGE_S:.0f} s")


def calibration_sound(seconds: float = SECONDS, level_db: float = LEVEL_DB,
                      seed: int = 0) -> Samples:
    """Pink noise, ``level_db`` dBFS RMS, faded in and out; quiet lead-in and ring-out."""
    n = int(seconds * PROCESSING_RATE)
    rng = np.random.default_rng(seed)
    pink = signal.lfilter([1.0], [1.0, -0.9], rng.standard_normal(n))
    noise = pink * (10 ** (level_db / 20) / (np.std(pink) + 1e-12))
    fade = np.linspace(0.0, 1.0, int(FADE_S * PROCESSING_RATE))
    noise[: fade.size] *= fade
    noise[-fade.size:] *= fade[::-1]
    quiet_before = np.zeros(int(LEAD_IN_S * PROCESSING_RATE))
    quiet_after = np.zeros(int(SETTLE_S * PROCESSING_RATE))
    return np.concatenate([quiet_before, noise, quiet_after]).astype(np.float32)


async def calibrate(device: DuplexDevice, canceller: EchoCanceller, sound: Samples,
                    keep: Path) -> Calibration:
    """Play ``sound`` (from :func:`calibration_sound`) through ``device``, learn its echo
    with ``canceller`` (a fresh one, its recognizer's copy the linear stage's output as by
    default), and write the learned path to ``keep``.

    Raises :class:`CalibrationError` (nothing written) when the sound's echo was not heard
    clearly above the room's noise, was heard but not cancelled, or the canceller learned no
    path from it (no delay found, or too little of the sound after it).
    """
    lead = int(LEAD_IN_S * PROCESSING_RATE)
    noise_end = sound.size - int(SETTLE_S * PROCESSING_RATE)
    judged = max(lead, noise_end - int(JUDGE_S * PROCESSING_RATE))
    mic = np.zeros(sound.size, dtype=np.float32)
    linear = np.zeros(sound.size, dtype=np.float32)

    def speaker(n: int, at: int) -> Samples:
        out = np.zeros(n, dtype=np.float32)
        part = sound[at: at + n]
        out[: part.size] = part
        return out

    async for frame in device.frames(speaker):
        at = frame.sample
        if at >= sound.size:
            device.stop()  # the device ends the stream (and closes it) before the next frame
            continue
        out = canceller.cancel(frame.mic, frame.speaker)
        size = min(FRAME, sound.size - at)
        mic[at: at + size] = frame.mic[:size]
        linear[at: at + size] = out.for_asr[:size]
    lat = canceller.latency_samples
    heard_db = rms_db(mic[judged:noise_end]) - rms_db(mic[:lead])
    cancelled_db = erle_db(mic[judged:noise_end], linear[judged + lat: noise_end + lat])
    stats = canceller.stats
    if heard_db < MIN_HEARD_DB:
        raise CalibrationError(
            f"the calibration noise was hardly heard (its echo {heard_db:.0f} dB above the "
            f"room's noise, {MIN_HEARD_DB:.0f} needed): is the speaker on, the volume up, and "
            "the input the microphone next to it? Nothing was kept")
    if stats.delay_ms is None or not stats.delay_estimated:
        raise CalibrationError(
            "the echo canceller found no speaker -> microphone delay in the calibration "
            "noise (a delay beyond aec_max_delay_ms, or a speaker and microphone on separate "
            "devices that drop audio?): nothing was kept")
    if cancelled_db < MIN_CANCELLED_DB:
        raise CalibrationError(
            f"the calibration noise's echo was heard but only {cancelled_db:.0f} dB of it "
            f"could be cancelled ({MIN_CANCELLED_DB:.0f} needed): was something else making "
            "sound, or is the speaker distorting (turn the volume down)? Nothing was kept")
    path = canceller.echo_path()
    if path is None:  # the delay was found too late to learn from enough of the noise
        raise CalibrationError("the calibration noise was too short to learn the room from: "
                               "play it longer (--seconds). Nothing was kept")
    save_echo_path(path, keep)
    return Calibration(delay_ms=stats.delay_ms, heard_db=heard_db, cancelled_db=cancelled_db)
