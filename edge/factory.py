"""Builds the edge's real stages from its settings (the one place that picks adapters)."""

from __future__ import annotations

from functools import partial

from edge.aec.base import Cancelled, EchoCanceller
from edge.aec.replay import EchoReplay
from edge.config import EdgeSettings
from edge.pipeline import EdgeStages
from edge.turns import EndOfTurnPolicy, FixedTimeoutPolicy, TurnTaker, TurnTimings
from edge.vad import SileroVad, VadConfig, speech_onset
from shared.audio import PROCESSING_RATE, Samples
from shared.errors import ConfigError


class PassThrough:
    """No echo cancellation (``aec = "off"``): for a headset, or to compare."""

    def cancel(self, mic: Samples, far: Samples) -> Cancelled:
        return Cancelled(clean=mic, for_asr=mic)


def end_of_turn_policy(s: EdgeSettings) -> EndOfTurnPolicy:
    if s.endpointing == "timeout":
        return FixedTimeoutPolicy(s.timeout_ms)
    from edge.endpointing.detector import EndOfTurnPolicy as DetectorPolicy

    return DetectorPolicy()


def echo_canceller(s: EdgeSettings) -> EchoCanceller:
    """The echo canceller ``s.aec`` names."""
    from edge.aec import EchoSettings, create_echo_canceller

    if s.aec == "off":
        raise ConfigError("echo cancellation is off (setting aec = \"off\")")
    return create_echo_canceller(EchoSettings(kind=s.aec, delay_ms=s.aec_delay_ms,
                                              max_delay_ms=s.aec_max_delay_ms))


def build_stages(s: EdgeSettings, *, echo_cancelling: bool = True) -> EdgeStages:
    """The real stages: livekit/numpy AEC, silero VAD, sherpa-onnx ASR, prosody, policy."""
    from edge.asr import load_recognizer
    from edge.prosody import ProsodyMeter

    aec = echo_canceller(s) if echo_cancelling and s.aec != "off" else PassThrough()
    vad_config = VadConfig(threshold=s.vad_threshold, min_speech_s=s.vad_min_speech_s,
                           min_silence_s=s.vad_min_silence_s, quiet_db=s.vad_quiet_db)
    vad = SileroVad(vad_config)
    asr = load_recognizer(s.asr_engine, s.asr_model, num_threads=s.asr_threads)
    timings = TurnTimings(partial_every=int(s.partial_interval_s * PROCESSING_RATE),
                          continuation_window=int(s.continuation_window_s * PROCESSING_RATE),
                          decode_at_end=not s.speculative_asr)
    turns = TurnTaker(end_of_turn_policy(s), timings)
    replay = None
    if s.aec_replay and not isinstance(aec, PassThrough):  # with a VAD for the recognizer's
        find_onset = partial(speech_onset, SileroVad(vad_config))  # thread
        replay = EchoReplay(aec, find_onset=find_onset, preroll=timings.preroll)
    return EdgeStages(aec=aec, vad=vad, asr=asr, prosody=ProsodyMeter(), turns=turns,
                      replay=replay)
