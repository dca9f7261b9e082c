"""``parley bench talk``: the user talking over the agent, through the whole edge pipeline.

For each room of ``parley bench aec`` (the same seeds, rooms and voices) the double-talk scene
runs through what ``parley edge process --far`` runs — echo cancellation after a learning pass
over the recording, VAD, turn-taking, speculative finals — and through what ``--causal`` runs,
as the live agent hears it from a cold start (replays included; what ``parley edge run
--no-calibrate-first`` meets), the same again after ``parley edge calibrate`` in that room (the
live agent starting from the echo path learned from the calibration noise: what ``parley edge
run`` does on its first start, see :mod:`edge.live`), and the same user without the echo
through what ``parley edge process`` runs on the mic alone. The words of all segments of a
file, joined, are scored against what the user said: the WER pooled over rooms with the echo
(three ways) and without, and the 90 % paired bootstrap intervals of the differences (rooms
resampled). ``--user-at`` moves the user's first words that far into the agent's reply (0.3:
the early talker, before a cold canceller has learned the room).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from edge.aec import livekit_available
from edge.aec.bench import FAR_VOICE_HELP, FAR_VOICES, far_voice_for
from edge.aec.evaluate import paired_interval, spoken
from edge.audio_io import FileDuplex
from edge.calibrate import calibrate, calibration_sound
from edge.config import EdgeSettings, load_settings
from edge.factory import echo_canceller
from edge.offline import process_audio
from edge.room import EchoPath, Scene, build_scene, random_levels, random_room
from shared.audio import Samples
from shared.errors import ConfigError
from shared.text import word_errors

bench_app = typer.Typer(help="The user over the agent, through the whole edge pipeline.")


@dataclass(frozen=True, slots=True)
class Transcribed:
    """One file through the pipeline: the words of its segments, their count, the AEC's cost."""

    text: str
    segments: int
    aec_ms: float


ECHOED = ("echo", "live", "calibrated")  # the ways with the agent's echo (Room's fields)


@dataclass(frozen=True, slots=True)
class Room:
    seed: int
    said: str
    echo: Transcribed  # edge process --far
    live: Transcribed  # the same, --causal
    calibrated: Transcribed  # --causal after `parley edge calibrate` in the same room
    alone: Transcribed


@bench_app.command()
def talk(
    seeds: Annotated[int, typer.Option(help="Rooms (seeds of parley bench aec).")] = 30,
    first_seed: Annotated[int, typer.Option(help="Seed of the first room.")] = 0,
    user_at: Annotated[float | None, typer.Option(
        help="The user starts this many seconds into the reply (default: the room's "
             "1.5-4 s).")] = None,
    far_voice: Annotated[str, typer.Option(
        help=FAR_VOICE_HELP)] = "mixed",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """WER of the user's words with the agent's echo and without, through the pipeline."""
    if (seeds < 1 or first_seed < 0 or far_voice not in FAR_VOICES
            or (user_at is not None and not 0.0 <= user_at <= 6.0)):
        raise ConfigError(f"bad arguments: seeds {seeds} from {first_seed}, far voice "
                          f"{far_voice!r}, user at {user_at} s (0-6)")
    settings = load_settings()
    rooms = [measure_room(seed, far_voice, user_at, settings)
             for seed in range(first_seed, first_seed + seeds)]
    aec = settings.aec if settings.aec != "auto" else (
        "livekit" if livekit_available() else "numpy")
    report = summarize(rooms) | {"user_at_s": user_at, "aec": aec}
    typer.echo(json.dumps(report, indent=1) if as_json else _render(report))


def talk_scene(seed: int, far_voice: str, user_at: float | None) -> Scene:
    levels = random_levels(seed)
    if user_at is not None:
        levels = replace(levels, near_start_s=user_at)
    return build_scene("double_talk", seed, room=random_room(seed), levels=levels,
                       far_voice=far_voice_for(far_voice, seed))


def measure_room(seed: int, far_voice: str, user_at: float | None,
                 settings: EdgeSettings) -> Room:
    scene = talk_scene(seed, far_voice, user_at)
    return Room(seed, " ".join(scene.near_texts),
                echo=hear(scene.mic, scene.far, settings),
                live=hear(scene.mic, scene.far, settings, causal=True),
                calibrated=hear_calibrated(scene, settings),
                alone=hear((scene.near + scene.noise).astype(np.float32), None, settings))


def hear(mic: Samples, far: Samples | None, settings: EdgeSettings,
         causal: bool = False, memory: Path | None = None) -> Transcribed:
    result, _ = process_audio(mic, far, settings, memory, causal=causal)
    text = spoken(" ".join(s["text"] for s in result["segments"]))
    return Transcribed(text, len(result["segments"]), float(result["stage_ms"]["aec"]))


def hear_calibrated(scene: Scene, settings: EdgeSettings) -> Transcribed:
    """The live agent (``--causal``) over ``scene``, started from the echo path that
    ``parley edge calibrate`` learned in the scene's room (its noise played through the same
    speaker -> mic path, over the scene's background noise)."""
    sound = calibration_sound()
    room_noise = np.resize(scene.noise, sound.size)
    device = FileDuplex(room_noise, realtime=False, echo=EchoPath(scene.room))
    with tempfile.TemporaryDirectory() as tmp:
        keep = Path(tmp) / "echo-path.npz"
        asyncio.run(calibrate(device, echo_canceller(settings), sound, keep))
        return hear(scene.mic, scene.far, settings, causal=True, memory=keep)


def summarize(rooms: list[Room]) -> dict[str, Any]:
    said = [r.said for r in rooms]
    ways = {k: [getattr(r, k) for r in rooms] for k in (*ECHOED, "alone")}
    errors = {k: np.array([word_errors(s, t.text) for s, t in zip(said, v, strict=True)],
                          dtype=float) for k, v in ways.items()}
    words = errors["alone"][:, 1]
    alone = errors["alone"][:, 0]
    return {
        "rooms": len(rooms),
        "wer": {k: round(float(e[:, 0].sum() / words.sum()), 3) for k, e in errors.items()},
        **{f"{k}_minus_alone_90": [round(x, 3) for x in paired_interval(errors[k][:, 0], alone,
                                                                        words)]
           for k in ECHOED},
        "segments": {k: sum(t.segments for t in v) for k, v in ways.items()}
        | {"utterances": 2 * len(rooms)},
        "aec_ms_per_file_median": {k: round(float(np.median([t.aec_ms for t in ways[k]])), 1)
                                   for k in ECHOED},
        "per_room": [{"seed": r.seed, "said": r.said} | {k: getattr(r, k).text for k in ways}
                     for r in rooms],
    }


def _render(report: dict[str, Any]) -> str:
    w, at, seg, aec = (report["wer"], report["user_at_s"], report["segments"],
                       report["aec_ms_per_file_median"])
    lo, hi = report["echo_minus_alone_90"]
    live_lo, live_hi = report["live_minus_alone_90"]
    cal_lo, cal_hi = report["calibrated_minus_alone_90"]
    return (f"{report['rooms']} rooms, user {'1.5-4' if at is None else at} s into the reply, "
            f"aec {report['aec']}: WER with echo {w['echo']:.3f} (difference to alone, 90 % "
            f"interval [{lo:+.3f}, {hi:+.3f}]), --causal {w['live']:.3f} ([{live_lo:+.3f}, "
            f"{live_hi:+.3f}]), --causal after calibrating {w['calibrated']:.3f} ([{cal_lo:+.3f}, "
            f"{cal_hi:+.3f}]), alone {w['alone']:.3f}; segments {seg['echo']} / {seg['live']} / "
            f"{seg['calibrated']} / {seg['alone']} for {seg['utterances']} utterances; AEC "
            f"{aec['echo']:.0f} / {aec['live']:.0f} / {aec['calibrated']:.0f} ms per file "
            "(median)")
