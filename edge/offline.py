"""``parley edge process``: the edge front end over recorded files, no cloud.

The mic file (and, when given, what the speaker played meanwhile) runs through the same
agent as live audio — AEC, VAD, turn-taking, ASR, prosody — in lockstep (each decode
finishes before the next frame), as fast as the machine allows.

One thing a recording allows that live audio does not: with a far end, the echo canceller
first learns the room from the recording's first ``LEARN_S`` (output unused) and rewinds, so
the run proper starts from the echo path of this room, as a live agent does after a restart
(:mod:`edge.aec.memory`), instead of learning it while the user may already talk over the
agent. ``causal=True`` (``--causal``) skips that pass: what the live agent hears from a cold
start.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from edge.aec.base import FRAME_SAMPLES, EchoCanceller, cancel_recording
from edge.aec.memory import keep_echo_path, recall_echo_path
from edge.audio_io import FileDuplex
from edge.config import EdgeSettings
from edge.factory import build_stages
from edge.pipeline import EdgeAgent, TurnRecord
from shared.audio import PROCESSING_RATE, Samples, read_wav, write_wav
from shared.errors import AudioInputError

# A live reply starts playing about this long after the end of speech (`make demo`: 0.5-0.6 s).
REPLY_STARTS_S = 0.5
# The echo canceller's learning pass reads at most this much of the recording: the cold
# start it stands in for is over within seconds of far end, and the pass costs as much as
# the canceller's share of the run proper.
LEARN_S = 30.0


def process_files(mic: Path, far: Path | None, clean_out: Path | None,
                  settings: EdgeSettings, memory: Path | None = None,
                  causal: bool = False) -> dict[str, Any]:
    """Segments with text and prosody, the real-time factor and the cost of each stage;
    with ``memory``, the echo canceller starts from the echo path kept there (if any) and
    keeps what it learned there (see :mod:`edge.aec.memory`); ``causal``: no learning pass
    (see the module's docstring)."""
    mic_audio = read_wav(mic)
    far_audio = read_wav(far) if far is not None else None
    if far_audio is not None and far_audio.size == 0:
        raise AudioInputError(f"{far} holds no audio samples")
    result, clean = process_audio(mic_audio, far_audio, settings, memory,
                                  keep_clean=clean_out is not None, causal=causal)
    if clean_out is not None and clean is not None:
        write_wav(clean_out, clean)
    return result


def process_audio(mic_audio: Samples, far_audio: Samples | None, settings: EdgeSettings,
                  memory: Path | None = None,
                  keep_clean: bool = False,
                  causal: bool = False) -> tuple[dict[str, Any], Samples | None]:
    """:func:`process_files` on audio at 16 kHz: its result, and the echo-cancelled mic
    signal when ``keep_clean``."""
    # No cloud answers offline: no partial hypotheses to show. Live, a user who resumes before
    # hearing the reply continues their turn; offline, one who resumes within the time a live
    # reply takes to start playing.
    offline = settings.model_copy(update={"partial_interval_s": 0.0,
                                          "continuation_window_s": REPLY_STARTS_S})
    stages = build_stages(offline, echo_cancelling=far_audio is not None)
    recalled = recall_echo_path(stages.aec, memory)
    device = FileDuplex(mic_audio, realtime=False, far=far_audio)
    agent = EdgeAgent(device, stages, keep_clean=keep_clean, lockstep=True)
    t0 = time.perf_counter()
    if far_audio is not None and not causal and isinstance(stages.aec, EchoCanceller):
        learn_the_room(stages.aec, mic_audio, far_audio)
        agent.stage_s["aec"] += time.perf_counter() - t0
    asyncio.run(agent.run())
    elapsed = time.perf_counter() - t0
    kept = keep_echo_path(stages.aec, memory)
    audio_s = mic_audio.size / PROCESSING_RATE
    segments = [segment(r) for r in sorted(agent.records.values(), key=lambda r: r.start)
                if r.final_sent is not None and not r.cancelled]
    result = {
        "segments": segments,
        "audio_s": round(audio_s, 3),
        "rtf": round(elapsed / audio_s, 4) if audio_s else 0.0,
        "stage_ms": {k: round(v * 1000.0, 1) for k, v in agent.stage_s.items()},
    }
    if memory is not None and isinstance(stages.aec, EchoCanceller):
        result["echo_memory"] = {"file": str(memory), "recalled": recalled, "kept": kept,
                                 "remembered_path": stages.aec.stats.remembered_path}
    return result, agent.clean_track[: mic_audio.size] if keep_clean else None


def learn_the_room(aec: EchoCanceller, mic: Samples, far: Samples) -> None:
    """Run the first ``LEARN_S`` of the recording through ``aec``, which starts at the
    recording's start (output unused, the canceller's latency flushed with silence), then
    rewind it there: by every frame it has heard."""
    n = min(mic.size, int(LEARN_S * PROCESSING_RATE))
    cancel_recording(aec, mic[:n], far[:n])
    aec.rewind(aec.stats.frames * FRAME_SAMPLES)


def segment(r: TurnRecord) -> dict[str, Any]:
    prosody = r.prosody
    return {
        "start_s": round(r.start / PROCESSING_RATE, 3),
        "end_s": round(r.speech_end / PROCESSING_RATE, 3),
        "text": r.user_text,
        "prosody": {
            "f0_mean_hz": prosody.f0_mean_hz, "f0_range_hz": prosody.f0_range_hz,
            "f0_final_slope_hz_per_s": prosody.f0_final_slope_hz_per_s,
            "energy_db": prosody.energy_db, "speaking_rate_wps": prosody.speaking_rate_wps,
            "pause_before_ms": prosody.pause_before_ms,
        } if prosody is not None else {},
        "eou_confidence": round(r.eou_confidence, 3),
    }
