"""Echo cancellation with WebRTC's audio processing module through livekit (the only module
that imports livekit).

Chain: our delay estimation and Kalman linear filter (fast from a cold start, robust in
double talk) -> our residual echo suppressor -> WebRTC APM: high-pass always; noise
suppression with ``settings.noise_suppression``; AEC3 with ``settings.webrtc_aec``.
Measured on the room-echo test (``parley bench aec``, 6 rooms): AEC3 alone cuts ~45 % of the
user's speech frames by more than 10 dB during double talk (whisper WER 0.79 vs 0.20 for the
user alone); behind our stages AEC3 still cuts ~50 % from a cold start (WER 0.61), and WebRTC
noise suppression adds a little loss for no ERLE gain, so both are off by default. On 30
rooms (2026-11-26, with the shadow filter) our stages followed by the high-pass filter gave
ERLE 38.6 dB median (worst room 28.9), WER 0.39 cold / 0.30 warm against 0.23 for the user
alone (README, "Measured").
"""

from __future__ import annotations

import numpy as np
from livekit import rtc

from edge.aec.base import FRAME_SAMPLES, EchoCanceller, EchoSettings
from edge.aec.delay import DelayEstimator
from edge.aec.linear import LinearEchoStage, residual_suppressor
from shared.audio import PROCESSING_RATE, float_to_pcm16, pcm16_to_float
from shared.errors import EngineError

# Output delay the APM adds at 16 kHz (measured: AEC3 buffers 128 samples, NS 96).
_AEC3_LATENCY = 128
_NS_LATENCY = 96


class LivekitEchoCanceller(EchoCanceller):
    """Linear stage + (optional) residual suppressor + WebRTC APM via livekit."""

    name = "livekit"

    def __init__(self, settings: EchoSettings = EchoSettings(), *, linear: bool = True,
                 spectral_suppression: bool = True) -> None:
        super().__init__()
        self.settings = settings
        self._linear = LinearEchoStage(settings) if linear else None
        # Without the linear stage (the "AEC3 alone" baseline) the delay is still estimated.
        self._estimator = None if linear else DelayEstimator(max_delay_ms=settings.max_delay_ms)
        self._suppressor = (residual_suppressor(settings)
                            if linear and spectral_suppression else None)
        self.latency_samples = (
            (self._suppressor.latency_samples if self._suppressor else 0)
            + (_AEC3_LATENCY if settings.webrtc_aec else 0)
            + (_NS_LATENCY if settings.noise_suppression else 0))
        self.name = "".join(part for part, on in (
            ("linear+", linear and not spectral_suppression), ("livekit", True),
            ("-apm-only", not linear),
            ("+ns", settings.noise_suppression), ("+aec3", settings.webrtc_aec)) if on)
        # The recognizer's copy gets its own high-pass filter; with WebRTC's AEC3 or noise
        # suppression on (they cut the user's words, and delay the output) it gets the clean
        # output instead.
        self._split = (self._suppressor is not None and settings.asr_suppression is not None
                       and not settings.webrtc_aec and not settings.noise_suppression)
        self._apm, self._asr_apm = self._new_apms()

    def __getstate__(self) -> dict[str, object]:
        """Copies (:meth:`replica`) leave the native APMs behind and make their own."""
        state = self.__dict__.copy()
        del state["_apm"], state["_asr_apm"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._apm, self._asr_apm = self._new_apms()

    def _new_apms(self) -> tuple[rtc.AudioProcessingModule, rtc.AudioProcessingModule | None]:
        """The APM of the clean output, and the recognizer copy's own one (when split)."""
        return self._new_apm(), (self._new_apm() if self._split else None)

    def _new_apm(self) -> rtc.AudioProcessingModule:
        s = self.settings
        return rtc.AudioProcessingModule(echo_cancellation=s.webrtc_aec,
                                         noise_suppression=s.noise_suppression,
                                         high_pass_filter=True)

    def _process(self, mic: np.ndarray, far: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        near = for_asr = mic
        if self._estimator is not None:
            self._estimator.push(far, mic)
        if self._linear is not None:
            linear = self._linear.process(mic, far)
            near = for_asr = linear.error
            if self._suppressor is not None:
                near, for_asr = self._suppressor.process(linear.error, linear.echo,
                                                         self._linear.residual_power,
                                                         self._linear.late_power)
        clean = self._run_apm(self._apm, near, far)
        if self._asr_apm is None:
            return clean, clean
        return clean, self._run_apm(self._asr_apm, for_asr, far)

    def _run_apm(self, apm: rtc.AudioProcessingModule, near: np.ndarray,
                 far: np.ndarray) -> np.ndarray:
        try:
            if self.settings.webrtc_aec:
                apm.process_reverse_stream(_frame(far))
                apm.set_stream_delay_ms(self._apm_delay_ms())
            frame = _frame(near)
            apm.process_stream(frame)
        except RuntimeError as exc:
            raise EngineError(f"WebRTC audio processing failed: {exc}") from exc
        return pcm16_to_float(bytes(frame.data.cast("B")))

    def _apm_delay_ms(self) -> int:
        """AEC3 gets the estimated delay (it refines it itself), 0 before an estimate."""
        delay = self._delay_samples()
        return 0 if delay is None else round(1000 * delay / PROCESSING_RATE)

    def _reset(self) -> None:
        if self._estimator is not None:
            self._estimator.reset()
        if self._linear is not None:
            self._linear.reset()
        if self._suppressor is not None:
            self._suppressor.reset()
        self._apm, self._asr_apm = self._new_apms()

    def _linear_stage(self) -> LinearEchoStage | None:
        return self._linear

    def _delay_samples(self) -> int | None:
        if self._estimator is not None:
            return self._estimator.delay_samples
        return None if self._linear is None else self._linear.delay_samples

    def _delay_estimated(self) -> bool:
        if self._estimator is not None:
            return self._estimator.delay_samples is not None
        return self._linear is not None and self._linear.delay_estimated


def _frame(samples: np.ndarray) -> rtc.AudioFrame:
    return rtc.AudioFrame(float_to_pcm16(samples.astype(np.float32)), PROCESSING_RATE, 1,
                          FRAME_SAMPLES)


def shut_down_livekit() -> None:
    """Release every livekit object and stop its native runtime now, while Python is whole.

    livekit stops it in an ``atexit`` handler; once, at the end of a 597-test run, one of its
    worker threads then panicked during the interpreter's teardown and aborted the process.
    Stopping it earlier (the test suite does, when it finishes) leaves those threads nothing
    to call back into. livekit has no public call for this; a newer livekit that moves it
    makes this a no-op.
    """
    import gc

    gc.collect()
    client_class = getattr(getattr(rtc, "_ffi_client", None), "FfiClient", None)
    client = getattr(client_class, "_instance", None)
    dispose = getattr(client, "_dispose", None)
    if callable(dispose):
        dispose()

