"""One file-mode conversation with a cloud tier, and what it measured.

The mic is a WAV paced in real time; the speaker is recorded on the mic's timeline (and, with
``room``, its echo is added back into the mic through a simulated room). Latencies come from
two sources that must agree: the agent's own waterfall, and the files — the first reply sample
on the speaker track after the end of the user's speech (known exactly when the input has a
sidecar JSON of its turns, as the bundled and benchmark inputs do).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.audio_io import FileDuplex
from edge.config import EdgeSettings
from edge.factory import build_stages
from edge.pipeline import EdgeAgent, TurnRecord
from edge.scenes import SpokenTurn, load_turns
from edge.uplink import ResilientUplink
from shared.audio import PROCESSING_RATE, Samples, read_wav

SILENT = 0.5 / 32768  # below one 16-bit step: silence in the speaker WAV


@dataclass
class DemoResult:
    turns: list[dict[str, Any]] = field(default_factory=list)
    speaker_wav: str | None = None
    barge_ins: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"turns": self.turns, "barge_ins": self.barge_ins,
                "speaker_wav": self.speaker_wav}


async def run_file_session(settings: EdgeSettings, wav: Path, out_wav: Path | None,
                           room: bool = True) -> DemoResult:
    """Play ``wav`` to the cloud tier at ``settings.cloud_url`` through a file-mode edge."""
    mic = read_wav(wav)
    known = load_turns(wav)
    stages = build_stages(settings)
    uplink = await ResilientUplink.open(settings.cloud_url, settings.token)
    holder: list[EdgeAgent] = []
    device = FileDuplex(mic, speaker_out=out_wav, realtime=True, echo=_room() if room else None,
                        tail_s=1.0, until=lambda: bool(holder) and holder[0].idle(),
                        max_tail_s=20.0)
    agent = EdgeAgent(device, stages, link=uplink)
    holder.append(agent)
    try:
        await agent.run()
    finally:
        await uplink.close()
    return measure(agent, device.speaker_track, known,
                   str(out_wav) if out_wav is not None else None)


def _room() -> Any:
    from edge.room import EchoPath, RoomSpec

    return EchoPath(RoomSpec(delay_ms=50.0, rt60_s=0.35, echo_gain_db=-6.0, seed=1))


def measure(agent: EdgeAgent, speaker: Samples, known: tuple[SpokenTurn, ...] | None,
            speaker_wav: str | None) -> DemoResult:
    result = DemoResult(speaker_wav=speaker_wav)
    answered = [r for r in sorted(agent.records.values(), key=lambda r: r.start)
                if r.final_sent is not None and not r.cancelled]
    for rec in answered:
        truth = _match(rec, known)
        end = int(truth.end_s * PROCESSING_RATE) if truth else rec.speech_end
        row = turn_row(rec)
        row["end_of_speech_s"] = round(end / PROCESSING_RATE, 3)
        row["from_files_ms"] = first_sound_after(speaker, end)
        result.turns.append(row)
    for spoken in known or ():
        if spoken.barge_in:
            result.barge_ins.append(barge_in_row(spoken, speaker))
    return result


def turn_row(rec: TurnRecord) -> dict[str, Any]:
    return {
        "turn_id": rec.turn_id, "user_text": rec.user_text, "reply_text": rec.reply_text.strip(),
        "latency_ms": {k: round(v, 1) for k, v in rec.latency_ms().items()},
        "eou_confidence": round(rec.eou_confidence, 3),
        "barged_in": rec.barged_in, "heard_text": rec.heard_text,
        "heard_s": round(rec.samples_heard / PROCESSING_RATE, 3),
    }


def _match(rec: TurnRecord, known: tuple[SpokenTurn, ...] | None) -> SpokenTurn | None:
    if not known:
        return None
    end_s = rec.speech_end / PROCESSING_RATE
    best = min(known, key=lambda t: abs(t.end_s - end_s))
    return best if abs(best.end_s - end_s) < 1.0 else None


def first_sound_after(speaker: Samples, at: int) -> float | None:
    """Milliseconds from sample ``at`` to the first audible speaker sample after it."""
    loud = np.flatnonzero(np.abs(speaker[at:]) > SILENT)
    return round(float(loud[0]) * 1000.0 / PROCESSING_RATE, 1) if loud.size else None


def barge_in_row(spoken: SpokenTurn, speaker: Samples) -> dict[str, Any]:
    """How fast the speaker fell silent after the user's onset, and whether it stayed so."""
    onset, end = int(spoken.start_s * PROCESSING_RATE), int(spoken.end_s * PROCESSING_RATE)
    window = np.abs(speaker[onset:end]) > SILENT
    loud = np.flatnonzero(window)
    playing_at_onset = bool(np.any(np.abs(speaker[max(0, onset - 1600):onset]) > SILENT))
    silent_after_ms = (float(loud[-1] + 1) * 1000.0 / PROCESSING_RATE) if loud.size else 0.0
    return {"text": spoken.text, "onset_s": spoken.start_s,
            "reply_playing_at_onset": playing_at_onset,
            "silent_after_ms": round(silent_after_ms, 1),
            "stayed_silent": bool(loud.size == 0 or loud[-1] < window.size - 1)}
