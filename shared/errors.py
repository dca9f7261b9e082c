"""Parley's own exception types.

Errors are converted into these at module boundaries. Every ``ParleyError`` carries a message
that is fit to print as the one line a user sees (the CLI prints it without a traceback).
"""

from __future__ import annotations


class ParleyError(Exception):
    """Base of every expected failure; ``str(err)`` is a complete one-line explanation."""

    exit_code = 1


class ConfigError(ParleyError):
    """A setting or command-line value is invalid."""

    exit_code = 2


class AudioInputError(ParleyError):
    """An audio file or buffer cannot be used (missing, not audio, too long, empty...)."""


class AudioDeviceError(ParleyError):
    """No audio device or no PortAudio library; the message names the fix and the file mode."""


class ModelNotReadyError(ParleyError):
    """A model file is missing; the message says which command builds or fetches it."""


class ModelBuildError(ParleyError):
    """Building a model from its registry package failed."""


class NetworkError(ParleyError):
    """The network is unreachable, a peer vanished, or a remote refused us."""


class EngineError(ParleyError):
    """An inference engine (ASR, LLM, TTS, VAD) failed on valid input."""
