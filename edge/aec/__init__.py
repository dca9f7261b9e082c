"""Acoustic echo cancellation on the edge.

``create_echo_canceller(settings)`` returns an :class:`EchoCanceller`: the livekit one
(WebRTC audio processing after our linear stage) when livekit is installed, else the numpy
one. Call ``cancel(mic_frame, far_frame)`` every 10 ms (160 samples each): it gives the clean
frame (for the VAD) and the recognizer's copy (``process`` gives only the clean one).
"""

from __future__ import annotations

from edge.aec.base import (
    FRAME_SAMPLES,
    Cancelled,
    EchoCanceller,
    EchoSettings,
    EchoStats,
    cancel_recording,
    cancel_signal,
)
from shared.errors import ConfigError

__all__ = ["FRAME_SAMPLES", "Cancelled", "EchoCanceller", "EchoSettings", "EchoStats",
           "cancel_recording", "cancel_signal", "create_echo_canceller", "livekit_available"]


def livekit_available() -> bool:
    """True when livekit's audio processing module can be imported."""
    try:
        from livekit import rtc  # noqa: F401
    except ImportError:
        return False
    return True


def create_echo_canceller(settings: EchoSettings | None = None) -> EchoCanceller:
    """The canceller ``settings.kind`` asks for (``auto``: livekit when installed)."""
    settings = settings or EchoSettings()
    kind = settings.kind
    if kind == "auto":
        kind = "livekit" if livekit_available() else "numpy"
    if kind == "numpy":
        from edge.aec.linear import NumpyEchoCanceller

        return NumpyEchoCanceller(settings)
    if kind == "livekit":
        if not livekit_available():
            raise ConfigError("echo canceller 'livekit' needs the livekit package; "
                              "install it with: pip install 'parley[edge]' (or use kind 'numpy')")
        from edge.aec.livekit_apm import LivekitEchoCanceller

        return LivekitEchoCanceller(settings)
    raise ConfigError(f"unknown echo canceller '{kind}' (expected auto, livekit or numpy)")
