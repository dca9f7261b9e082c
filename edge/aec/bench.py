"""``parley bench aec``: every echo canceller on the room-echo test.

For each seed (a random room: delay 20-150 ms, RT60 0.2-0.6 s, some loudspeaker clipping,
noise, user level and double-talk start drawn from the seed) it runs far-end-only,
double-talk and near-end-only scenes from a cold start, and prints per implementation the
median and worst of: ERLE (first 2 s, after 4 s, whole), delay error, near-end loss in double
talk, near-end loss alone, cost per 10 ms frame, VAD onsets on the cancelled echo, and (when
the whisper model is built) word error rates pooled over all the user's utterances, with a
90 % paired bootstrap interval of each condition's WER minus the user-alone WER.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from functools import partial
from typing import Annotated

import numpy as np
import typer

from edge.aec import EchoSettings, livekit_available
from edge.aec.evaluate import (
    CountSpeech,
    Make,
    SceneResult,
    Summary,
    Transcribe,
    evaluate_seed,
    seed_scenes,
    summarize,
)
from shared.audio import PROCESSING_RATE, Samples
from shared.errors import ConfigError

bench_app = typer.Typer(help="Echo cancellation on the room-echo test.")

FAR_VOICES = ("espeak", "piper", "mixed")  # see far_voice_for
FAR_VOICE_HELP = "Far-end voice: espeak, piper, or mixed (odd seeds piper)."


def implementations() -> dict[str, tuple[Make, EchoSettings]]:
    """Name -> (factory, settings) of every canceller that can run here."""
    from edge.aec.linear import NumpyEchoCanceller

    impls: dict[str, tuple[Make, EchoSettings]] = {"numpy": (NumpyEchoCanceller, EchoSettings())}
    if livekit_available():
        from edge.aec.livekit_apm import LivekitEchoCanceller

        aec3 = EchoSettings(webrtc_aec=True, noise_suppression=True)
        impls |= {
            "livekit": (LivekitEchoCanceller, EchoSettings()),
            "livekit+ns": (LivekitEchoCanceller, EchoSettings(noise_suppression=True)),
            "livekit+aec3": (LivekitEchoCanceller, aec3),
            "linear+aec3": (partial(LivekitEchoCanceller, spectral_suppression=False), aec3),
            "aec3-alone": (partial(LivekitEchoCanceller, linear=False), aec3),
        }
    return impls


@bench_app.command()
def aec(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    seeds: Annotated[int, typer.Option(help="Rooms (each: 3 scenes, cold start).")] = 6,
    first_seed: Annotated[int, typer.Option(help="Seed of the first room.")] = 0,
    only: Annotated[str, typer.Option(help="Comma-separated implementations (default all).")] = "",
    far_voice: Annotated[str, typer.Option(
        help=FAR_VOICE_HELP)] = "mixed",
    drift_ppm: Annotated[float, typer.Option(
        help="Speaker clock this much faster than the mic's in every room (two devices).")] = 0.0,
    rt60_s: Annotated[float | None, typer.Option(
        help="Every room's reverberation time (s) instead of the drawn 0.2-0.6 s.")] = None,
    vad: Annotated[bool, typer.Option(help="Count VAD onsets on the cancelled echo.")] = True,
    asr: Annotated[bool, typer.Option(help="Word error rates (needs whisper built).")] = True,
) -> None:
    """ERLE, delay error, double-talk near-end loss and cost per frame of each canceller."""
    impls = implementations()
    names = [n.strip() for n in only.split(",") if n.strip()] or list(impls)
    unknown = [n for n in names if n not in impls]
    if (unknown or seeds < 1 or first_seed < 0 or far_voice not in FAR_VOICES
            or not abs(drift_ppm) <= 1000 or (rt60_s is not None and not 0.05 <= rt60_s <= 3)):
        raise ConfigError(f"bad arguments: implementations {unknown} (known {list(impls)}), "
                          f"seeds {seeds} from {first_seed}, far voice {far_voice!r}, "
                          f"drift {drift_ppm} ppm (at most 1000), RT60 {rt60_s} s (0.05-3)")
    count_speech = _vad_counter() if vad else None
    transcribe = _remembering(_transcriber()) if asr else None
    rooms = range(first_seed, first_seed + seeds)
    voices = {s: far_voice_for(far_voice, s) for s in rooms}
    scenes = [seed_scenes(s, voices[s], drift_ppm, rt60_s) for s in rooms]
    results: dict[str, list[SceneResult]] = {}
    for name in names:
        make, settings = impls[name]
        results[name] = [evaluate_seed(make, settings, sc, count_speech, transcribe)
                         for sc in scenes]
    summaries = [summarize(n, rs) for n, rs in results.items()]
    report = _report(summaries, results, voices, transcribe is not None) | {
        "drift_ppm": drift_ppm, "rt60_s": rt60_s}
    typer.echo(json.dumps(report, indent=1) if as_json else _table(summaries))


def far_voice_for(choice: str, seed: int) -> Samples | None:
    wants_piper = choice == "piper" or (choice == "mixed" and seed % 2 == 1)
    return _piper_far_end(seed) if wants_piper else None


def _piper_far_end(seed: int) -> Samples | None:
    """Three sentences in the piper voice (the real far end), or None without the voice."""
    from models.corpus import SENTENCES, trim_silence
    from shared.audio import resample
    from shared.errors import ModelNotReadyError

    try:
        from cloud.engines.tts import default_piper

        voice = default_piper()
    except (ImportError, ModelNotReadyError):
        return None
    rng = np.random.default_rng(30_000 + seed)
    pieces: list[Samples] = []
    for i in rng.choice(len(SENTENCES), 3, replace=False):
        audio = resample(voice.synthesize(SENTENCES[int(i)]), voice.sample_rate, PROCESSING_RATE)
        pieces += [trim_silence(audio), np.zeros(int(rng.uniform(0.2, 0.6) * PROCESSING_RATE),
                                                 dtype=np.float32)]
    return np.concatenate(pieces[:-1])


def _vad_counter() -> CountSpeech | None:
    """Speech onsets silero (the edge's VAD, default settings) finds in a signal."""
    from edge.vad import SileroVad, SpeechStarted
    from shared.errors import ModelNotReadyError

    try:
        vad = SileroVad()
    except ModelNotReadyError:
        return None

    def count(signal: Samples) -> int:
        vad.reset()
        return sum(isinstance(e, SpeechStarted) for e in vad.push(signal))

    return count


def _transcriber() -> Transcribe | None:
    """The edge's own recognizer (whisper tiny.en through sherpa-onnx), if it is built."""
    from edge.asr import load_recognizer
    from shared.errors import ModelNotReadyError

    try:
        recognizer = load_recognizer("whisper")
    except ModelNotReadyError:
        return None
    return lambda audio: recognizer.transcribe(audio).text


def _remembering(transcribe: Transcribe | None) -> Transcribe | None:
    """The same audio (raw mic, user alone) is decoded once for all implementations."""
    if transcribe is None:
        return None
    seen: dict[bytes, str] = {}

    def remembered(audio: Samples) -> str:
        key = hashlib.sha1(np.ascontiguousarray(audio).tobytes()).digest()
        if key not in seen:
            seen[key] = transcribe(audio)
        return seen[key]

    return remembered


def _report(summaries: list[Summary], results: dict[str, list[SceneResult]],
            voices: dict[int, Samples | None], with_asr: bool) -> dict[str, object]:
    return {
        "acceptance": {s.name: {"erle_whole_median_ge_25": s.erle_whole_db[0] >= 25.0,
                                "erle_whole_worst_ge_25": s.erle_whole_db[1] >= 25.0}
                       for s in summaries},
        "implementations": {s.name: s.as_json() for s in summaries},
        "scenes": {n: [_compact(r, voices[r.seed]) for r in rs] for n, rs in results.items()},
        "asr": with_asr, "threads": os.cpu_count(),
    }


def _compact(r: SceneResult, voice: Samples | None) -> dict[str, object]:
    data = asdict(r)
    data["far_voice"] = "espeak" if voice is None else "piper"
    return {k: _rounded(v) for k, v in data.items()}


def _rounded(value: object) -> object:
    if isinstance(value, float):
        return round(value, 2)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _table(summaries: list[Summary]) -> str:
    head = (f"{'implementation':<14}{'cold':>6}{'steady':>7}{'whole':>6}{'worst':>6}"
            f"{'dly err':>8}{'DT loss':>8}{'eaten':>6}{'eaten>':>7}{'warm':>6}{'alone':>6}"
            f"{'ms/fr':>7}{'vad':>4}{'rst':>4}  wer")
    rows = [head]
    for s in summaries:
        wer = " ".join(f"{k}={v:.2f}" + (f" [{s.wer_minus_alone[k][0]:+.2f},"
                                           f"{s.wer_minus_alone[k][1]:+.2f}]"
                                           if k in s.wer_minus_alone else "")
                       for k, v in s.wer.items())
        if s.wer_vs_alone:
            wer += "; against the user-alone transcripts: " + " ".join(
                f"{k}={v:.2f}" for k, v in s.wer_vs_alone.items())
        rows.append(
            f"{s.name:<14}{s.erle_cold_db[0]:>6.1f}{s.erle_steady_db[0]:>7.1f}"
            f"{s.erle_whole_db[0]:>6.1f}{s.erle_whole_db[1]:>6.1f}{s.delay_error_ms[1]:>8.2f}"
            f"{s.double_talk_loss_db[0]:>8.1f}{s.double_talk_eaten[1]:>6.2f}"
            f"{s.double_talk_eaten_dominant[1]:>7.2f}{s.warm_double_talk_loss_db[0]:>6.1f}"
            f"{s.near_only_loss_db[0]:>6.1f}{s.ms_per_frame:>7.3f}"
            f"{_count(s.vad_onsets_echo):>4}{_count(s.vad_onsets_restart):>4}  {wer}")
    rows.append(
        "ERLE dB (comfort noise off), medians over seeds: cold = first 2 s, steady = after "
        "4 s, worst = lowest whole; dly err = worst |delay error| ms; DT loss = median level "
        "change of the user's speech in double talk from a cold start, dB; eaten = worst "
        "share of those frames cut > 10 dB, eaten> = same among frames where the user is "
        "louder than the echo; warm = DT loss after one far-end-only reply; alone = "
        "near-end-only level change; vad = VAD onsets on the cancelled echo, all seeds; "
        "rst = the same on the restarted run's agent-only start; "
        "wer, pooled over all utterances: aec (cold, as the pipeline decodes it: cancelled "
        "again at the utterance's end while the canceller has not settled), aec_streamed "
        "(cold, the copy streamed for the recognizer), aec_warm, aec_restart (cold, but from "
        "the echo path the first reply learned), mic (no AEC), alone (no echo), "
        "[90 % bootstrap interval of WER minus alone]; echo_words = words transcribed from "
        "the whole far-end-only outputs, all seeds; restart_echo_words = the same from the "
        "restarted run's output before the user talks.")
    return "\n".join(rows)
