"""The room-echo test: run an echo canceller over room scenes and measure what users notice.

Per seed, three scenes from :mod:`edge.room` (same room): far-end only (ERLE from a cold
start, delay error, whether the VAD fires on what is left of the echo), double talk (how much
of the user's speech survives, and optionally the recognizer's word error rate against the
user's speech without any echo, on what the pipeline's recognizer hears: the copy streamed
for it, cancelled again with what the canceller learned by the end of each utterance where
:mod:`edge.aec.replay` does so), near-end only (the user's voice must pass unchanged).
Over seeds, word error rates are pooled over all the user's utterances (edits summed over
reference words summed), with a paired bootstrap interval of each condition's WER minus the
WER of the user alone.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from edge.aec.base import FRAME_SAMPLES, Cancelled, EchoCanceller, EchoSettings, cancel_recording
from edge.aec.erle import ErleReport, NearEndLoss, erle_report, near_end_loss
from edge.aec.replay import EchoReplay
from edge.room import Scene, build_scene, random_room
from shared.audio import PROCESSING_RATE, Samples

Transcribe = Callable[[Samples], str]
CountSpeech = Callable[[Samples], int]  # speech onsets the VAD finds in a signal
Make = Callable[[EchoSettings], EchoCanceller]


@dataclass(frozen=True, slots=True)
class SceneResult:
    """Everything measured for one implementation on one seed's three scenes."""

    seed: int
    delay_ms: float
    rt60_s: float
    erle: ErleReport  # comfort noise off
    double_talk_erle_db: float  # over the agent-only part before the user starts (raw)
    delay_error_ms: float | None
    double_talk: NearEndLoss  # from a cold start: the user talks over the first reply
    double_talk_warm: NearEndLoss  # same scene after the far-end-only one (converged)
    near_only: NearEndLoss
    ms_per_frame: float
    vad_onsets_echo: int | None = None  # VAD speech starts on the far-end-only output
    vad_onsets_mic: int | None = None   # ... and on the raw mic (what would happen without AEC)
    vad_onsets_restart: int | None = None  # ... on the agent-only start of the restarted run
    wer: dict[str, float] = field(default_factory=dict)
    said: tuple[str, ...] = ()  # the user's utterances in the double-talk scene
    heard: dict[str, tuple[str, ...]] = field(default_factory=dict)  # condition -> transcripts


def run_scene(canceller: EchoCanceller, scene: Scene,
              cold: bool = True) -> tuple[Cancelled, float]:
    """Cancel a scene (from a cold start unless ``cold`` is False); returns both outputs on
    the mic timeline and the CPU time the process spent, in ms per 10 ms frame (CPU time, not
    wall time: the machines this runs on are shared)."""
    if cold:
        canceller.reset()
    started = time.process_time()
    out = cancel_recording(canceller, scene.mic, scene.far)
    frames = max(1, scene.mic.size // 160)
    return out, 1000.0 * (time.process_time() - started) / frames


@dataclass(frozen=True, slots=True)
class SeedScenes:
    """The three scenes of one seed (same room). Build them once and give every
    implementation the same audio: eSpeak does not synthesize bit-identical audio twice."""

    seed: int
    far: Scene
    talk: Scene
    near: Scene


def seed_scenes(seed: int, far_voice: Samples | None = None, drift_ppm: float = 0.0,
                rt60_s: float | None = None) -> SeedScenes:
    """The seed's room (:func:`~edge.room.random_room`), its speaker clock ``drift_ppm``
    faster than the mic's, its reverberation time ``rt60_s`` if given."""
    drawn = random_room(seed)
    room = replace(drawn, drift_ppm=drift_ppm, rt60_s=drawn.rt60_s if rt60_s is None else rt60_s)
    far, talk, near = (build_scene(k, seed, room=room, far_voice=far_voice)
                       for k in ("far_only", "double_talk", "near_only"))
    return SeedScenes(seed, far, talk, near)


def evaluate_seed(make: Make, settings: EchoSettings, scenes: SeedScenes,
                  count_speech: CountSpeech | None = None,
                  transcribe: Transcribe | None = None) -> SceneResult:
    """Measure one implementation (``make(settings)`` builds a fresh one) on one seed.

    ERLE is measured with comfort noise off (it refills suppressed bins with synthetic
    background noise, which would cap ERLE at the echo-to-noise ratio of the scene whatever
    the echo removal); everything else runs the real configuration.
    """
    seed, far, talk, near = scenes.seed, scenes.far, scenes.talk, scenes.near
    measured = run_scene(make(replace(settings, comfort_noise=False)), far)[0].clean
    canceller = make(settings)
    cancelled_far, ms_far = run_scene(canceller, far)
    out_far = cancelled_far.clean
    delay = canceller.stats.delay_ms
    learned = canceller.echo_path()
    warm, _ = run_scene(canceller, talk, cold=False)  # the agent's second reply
    cold, ms_talk = run_scene(canceller, talk)
    restarted = make(settings)  # the first reply after a restart, remembering the first
    if learned is not None:
        restarted.remember(learned)
    restart, restart_decoded = decode_scene(restarted, talk)
    before_user = restart.clean[: talk.near_spans[0][0] if talk.near_spans else None]
    warm_talk, out_talk = warm.clean, cold.clean
    near_only, ms_near = run_scene(canceller, near)
    out_near = near_only.clean
    heard = {}
    if transcribe is not None:
        decoded = {"aec": decode_scene(make(settings), talk)[1], "aec_restart": restart_decoded}
        heard = transcripts(transcribe, talk, decoded, cold.for_asr, warm.for_asr)
    return SceneResult(
        seed=seed, delay_ms=far.room.delay_ms, rt60_s=far.room.rt60_s,
        erle=erle_report(far.mic, measured, far.far_only),
        double_talk_erle_db=erle_report(talk.mic, out_talk, talk.far_only).whole_db,
        delay_error_ms=None if delay is None else delay - far.room.delay_ms,
        double_talk=near_end_loss(out_talk, talk.near, talk.double_talk, echo=talk.echo),
        double_talk_warm=near_end_loss(warm_talk, talk.near, talk.double_talk, echo=talk.echo),
        near_only=near_end_loss(out_near, near.near, near.near_only),
        ms_per_frame=float(np.median([ms_far, ms_talk, ms_near])),
        vad_onsets_echo=None if count_speech is None else count_speech(out_far),
        vad_onsets_mic=None if count_speech is None else count_speech(far.mic),
        vad_onsets_restart=None if count_speech is None else count_speech(before_user),
        said=talk.near_texts if heard else (), heard=heard,
        wer={} if transcribe is None else word_error_rates(talk.near_texts, heard)
        | {"echo_words": float(len(spoken(transcribe(out_far)).split())),
           "restart_echo_words": float(len(spoken(transcribe(before_user)).split()))})


UTTERANCE_MARGIN = int(0.3 * PROCESSING_RATE)


def utterance_spans(scene: Scene) -> list[tuple[int, int]]:
    """The user's utterances in ``scene`` with 0.3 s margins (what a VAD segment holds)."""
    pad = UTTERANCE_MARGIN
    return [(max(0, a - pad), min(scene.mic.size, b + pad)) for a, b in scene.near_spans]


def decode_scene(canceller: EchoCanceller, scene: Scene) -> tuple[Cancelled, list[Samples]]:
    """Run ``canceller`` over ``scene`` (from where it stands) as the pipeline does, and take
    the recognizer's audio of each utterance when the pipeline would decode its final (at the
    end of its margin): the copy streamed for the recognizer, or, where :mod:`edge.aec.replay`
    gives one, that stretch cancelled again with what the canceller has learned by then.
    Returns both outputs (as :func:`cancel_recording`) and each utterance's audio."""
    lat, n, size = canceller.latency_samples, FRAME_SAMPLES, scene.mic.size
    total = -(-(size + lat) // n) * n
    mic, far, clean, streamed = (np.zeros(total, dtype=np.float32) for _ in range(4))
    mic[:size], far[: min(size, scene.far.size)] = scene.mic, scene.far[:size]
    replay = EchoReplay(canceller, total / PROCESSING_RATE)
    pending, heard = utterance_spans(scene), []
    for i in range(0, total, n):  # positions on the output timeline: the mic's + latency
        out = canceller.cancel(mic[i: i + n], far[i: i + n])
        clean[i: i + n], streamed[i: i + n] = out.clean, out.for_asr
        replay.push(mic[i: i + n], far[i: i + n])
        while pending and pending[0][1] + lat <= i + n:
            a, b = pending.pop(0)
            job = replay.job(a + lat, b + lat)
            heard.append(job().audio if job is not None else streamed[a + lat: b + lat].copy())
    return Cancelled(clean[lat: lat + size], streamed[lat: lat + size]), heard


def transcripts(transcribe: Transcribe, talk: Scene, decoded: dict[str, list[Samples]],
                out_talk: Samples, warm_talk: Samples) -> dict[str, tuple[str, ...]]:
    """What the recognizer hears of each of the user's utterances (0.3 s margins): after AEC
    (``decoded``: as the pipeline decodes it, from a cold start and after a restart that
    remembered the echo path; the copy streamed for the recognizer from a cold start,
    without cancelling it again, and warm), on the raw mic, and of the user alone (no
    echo)."""
    spans = utterance_spans(talk)
    signals = {"aec_streamed": out_talk, "aec_warm": warm_talk, "mic": talk.mic,
               "alone": talk.near + talk.noise}
    return ({k: tuple(spoken(transcribe(x)) for x in audio) for k, audio in decoded.items()}
            | {k: tuple(spoken(transcribe(x[a:b])) for a, b in spans)
               for k, x in signals.items()})


def word_error_rates(said: tuple[str, ...], heard: dict[str, tuple[str, ...]]) -> dict[str, float]:
    """One seed's WER per condition; the bench adds ``echo_words``: the words the recognizer
    finds in the whole far-end-only output (should be none; the pipeline only decodes what
    the VAD passes), and ``restart_echo_words``: the same in the restarted run's output
    before the user talks."""
    from shared.text import corpus_word_error_rate

    return {k: corpus_word_error_rate(zip(said, texts, strict=True)) for k, texts in heard.items()}


BOOTSTRAP_RESAMPLES = 4000


def pooled_word_error_rates(results: list[SceneResult]) -> tuple[
        dict[str, float], dict[str, tuple[float, float]]]:
    """Corpus WER per condition over every utterance of every seed, and the 90 % paired
    bootstrap interval (utterances resampled, the same draw for all conditions, fixed seed)
    of each condition's WER minus the WER of the user alone."""
    from shared.text import word_errors

    rs = [r for r in results if r.heard]
    if not rs:
        return {}, {}
    counts = {k: np.array([word_errors(ref, hyp) for r in rs
                           for ref, hyp in zip(r.said, r.heard[k], strict=True)], dtype=float)
              for k in rs[0].heard}
    words = counts["alone"][:, 1]
    pooled = {k: float(c[:, 0].sum() / words.sum()) for k, c in counts.items()}
    intervals = {k: paired_interval(c[:, 0], counts["alone"][:, 0], words)
                 for k, c in counts.items() if k != "alone"}
    return pooled, intervals


def paired_interval(errors: np.ndarray, reference_errors: np.ndarray,
                    words: np.ndarray) -> tuple[float, float]:
    """90 % paired bootstrap interval (items resampled, fixed seed) of the pooled WER of
    ``errors`` minus that of ``reference_errors``, both counted per item over ``words``."""
    draws = np.random.default_rng(0).integers(0, words.size, (BOOTSTRAP_RESAMPLES, words.size))
    diff = (errors - reference_errors)[draws].sum(axis=1) / words[draws].sum(axis=1)
    low, high = np.percentile(diff, [5.0, 95.0])
    return float(low), float(high)


# "[ Inaudible ]", "(music)", and the same cut short by the end of the decode ("[ Inaud").
_ANNOTATION = re.compile(r"\[[^\]\[]*(?:\]|$|(?=\[))|\([^)(]*(?:\)|$|(?=\())")


def spoken(text: str) -> str:
    """Whisper's text without its annotations ("[ Inaudible ]", "(music)", also unclosed)
    and its speaker-change marks (">>"): not words."""
    tokens = _ANNOTATION.sub(" ", text).split()
    return " ".join(t for t in tokens if any(c.isalnum() for c in t))


@dataclass(frozen=True, slots=True)
class Summary:
    """Median and worst of the per-seed figures of one implementation."""

    name: str
    seeds: int
    erle_cold_db: tuple[float, float]
    erle_steady_db: tuple[float, float]
    erle_whole_db: tuple[float, float]
    delay_error_ms: tuple[float, float]
    double_talk_loss_db: tuple[float, float]
    double_talk_p10_db: tuple[float, float]
    double_talk_eaten: tuple[float, float]
    double_talk_eaten_dominant: tuple[float, float]
    warm_double_talk_loss_db: tuple[float, float]
    warm_double_talk_eaten: tuple[float, float]
    near_only_loss_db: tuple[float, float]
    ms_per_frame: float
    vad_onsets_echo: int | None
    vad_onsets_restart: int | None
    utterances: int
    wer: dict[str, float]  # pooled over utterances; *echo_words: summed over seeds
    wer_minus_alone: dict[str, tuple[float, float]]  # 90 % bootstrap interval per condition
    # Each condition's transcripts scored against what the recognizer heard of the user alone
    # (not against what was said): how far the echo and its cancellation move the recognizer,
    # apart from its own mistakes on the voice (tiny.en makes many on some eSpeak voices).
    wer_vs_alone: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = {"median": round(value[0], 2), "worst": round(value[1], 2)}
        data["ms_per_frame"] = round(self.ms_per_frame, 3)
        data["wer"] = {k: round(v, 3) for k, v in self.wer.items()}
        data["wer_vs_alone"] = {k: round(v, 3) for k, v in self.wer_vs_alone.items()}
        data["wer_minus_alone"] = {
            k: {"difference": round(self.wer[k] - self.wer["alone"], 3),
                "p5": round(low, 3), "p95": round(high, 3)}
            for k, (low, high) in self.wer_minus_alone.items()}
        return data


def summarize(name: str, results: Iterable[SceneResult]) -> Summary:
    """Median and worst (lowest ERLE, largest error, most loss) over seeds; WER pooled."""
    rs = list(results)

    def stat(values: list[float], worst_is_low: bool = True) -> tuple[float, float]:
        worst = min(values) if worst_is_low else max(values)
        return float(np.median(values)), float(worst)

    delays = [abs(r.delay_error_ms) for r in rs if r.delay_error_ms is not None]
    vad = [r.vad_onsets_echo for r in rs if r.vad_onsets_echo is not None]
    vad_restart = [r.vad_onsets_restart for r in rs if r.vad_onsets_restart is not None]
    wer, intervals = pooled_word_error_rates(rs)
    echo_words = {k: float(sum(r.wer[k] for r in rs if k in r.wer))
                  for k in ("echo_words", "restart_echo_words") if any(k in r.wer for r in rs)}
    return Summary(
        name=name, seeds=len(rs),
        erle_cold_db=stat([r.erle.cold_db for r in rs]),
        erle_steady_db=stat([r.erle.steady_db for r in rs]),
        erle_whole_db=stat([r.erle.whole_db for r in rs]),
        delay_error_ms=stat(delays, worst_is_low=False) if delays else (float("nan"),) * 2,
        double_talk_loss_db=stat([r.double_talk.median_db for r in rs]),
        double_talk_p10_db=stat([r.double_talk.p10_db for r in rs]),
        double_talk_eaten=stat([r.double_talk.eaten for r in rs], worst_is_low=False),
        double_talk_eaten_dominant=stat([r.double_talk.eaten_dominant for r in rs],
                                        worst_is_low=False),
        warm_double_talk_loss_db=stat([r.double_talk_warm.median_db for r in rs]),
        warm_double_talk_eaten=stat([r.double_talk_warm.eaten for r in rs], worst_is_low=False),
        near_only_loss_db=stat([r.near_only.median_db for r in rs]),
        ms_per_frame=float(np.median([r.ms_per_frame for r in rs])),
        vad_onsets_echo=sum(vad) if vad else None,
        vad_onsets_restart=sum(vad_restart) if vad_restart else None,
        utterances=sum(len(r.said) for r in rs),
        wer=wer | echo_words,
        wer_minus_alone=intervals,
        wer_vs_alone=word_error_rates_against_alone(rs))


def word_error_rates_against_alone(results: list[SceneResult]) -> dict[str, float]:
    """Per condition, the corpus WER of its transcripts with the user-alone transcripts as
    the reference (see :attr:`Summary.wer_vs_alone`)."""
    from shared.text import corpus_word_error_rate

    rs = [r for r in results if r.heard]
    conditions = [k for k in (rs[0].heard if rs else {}) if k != "alone"]
    return {k: corpus_word_error_rate((alone, hyp) for r in rs
                                      for alone, hyp in zip(r.heard["alone"], r.heard[k],
                                                            strict=True))
            for k in conditions}
