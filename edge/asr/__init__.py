"""On-device speech recognition: the interfaces and a factory that picks an engine by config.

``load_recognizer("whisper")`` gives the embedded Whisper tiny.en (built by ``parley models
build``); ``load_recognizer("streaming")`` / ``load_streaming_recognizer()`` give a
zipformer transducer fetched with ``parley models fetch NAME``. sherpa-onnx is imported by
the adapter modules only, when an engine is loaded.
"""

from __future__ import annotations

from typing import Literal

from edge.asr.base import SpeechRecognizer, StreamingRecognizer, Transcript, WordTiming
from shared.errors import ConfigError

Engine = Literal["whisper", "streaming"]
ENGINES: tuple[Engine, ...] = ("whisper", "streaming")
STREAMING_ROLES = frozenset({"encoder", "decoder", "joiner", "tokens"})
WHISPER_ROLES = frozenset({"encoder", "decoder", "tokens"})

__all__ = [
    "ENGINES", "SpeechRecognizer", "StreamingRecognizer", "Transcript", "WordTiming",
    "load_recognizer", "load_streaming_recognizer", "model_for",
]


def model_for(engine: str, model: str = "") -> str:
    """The manifest name to load: ``model`` if given, else the engine's default model."""
    from models import registry

    if engine not in ENGINES:
        raise ConfigError(f"unknown ASR engine '{engine}' (known: {', '.join(ENGINES)})")
    roles = STREAMING_ROLES if engine == "streaming" else WHISPER_ROLES
    if model:
        spec = registry.spec(model)
        if spec.kind != "asr" or not roles <= set(spec.files):
            raise ConfigError(f"model '{model}' is not a {engine} ASR model")
        return model
    candidates = [s for s in registry.load_manifest()
                  if s.kind == "asr" and roles <= set(s.files)
                  and (engine == "streaming" or "joiner" not in s.files)]
    if not candidates:
        raise ConfigError(f"the manifest has no {engine} ASR model")
    return next((s.name for s in candidates if s.default), candidates[0].name)


def load_recognizer(engine: str = "whisper", model: str = "",
                    num_threads: int = 2) -> SpeechRecognizer:
    """An offline recognizer; raises ``ModelNotReadyError`` naming the command to get it."""
    from models import registry

    name = model_for(engine, model)
    files = registry.model_files(name)
    if engine == "streaming":
        from edge.asr.streaming import StreamingAsOffline

        return StreamingAsOffline(load_streaming_recognizer(name, num_threads))
    from edge.asr.whisper import WhisperConfig, WhisperRecognizer

    return WhisperRecognizer(files, WhisperConfig(num_threads=num_threads),
                             engine=f"sherpa-onnx/{name}-int8")


def load_streaming_recognizer(model: str = "", num_threads: int = 2) -> StreamingRecognizer:
    """The streaming transducer (``parley models fetch`` a zipformer first)."""
    from edge.asr.streaming import StreamingConfig, ZipformerStreamingRecognizer
    from models import registry

    name = model_for("streaming", model)
    return ZipformerStreamingRecognizer(registry.model_files(name),
                                        StreamingConfig(num_threads=num_threads),
                                        engine=f"sherpa-onnx/{name}")
