"""eSpeak NG through ctypes (the library and data ship in the ``espeakng-loader`` wheel).

Two uses: IPA phonemes for piper voices (sherpa-onnx 2.x no longer phonemizes them), and
plain formant-synthesized speech in many voices for the evaluation corpora the project builds.
libespeak-ng keeps global state and is not thread-safe: every call holds one process lock.
"""

from __future__ import annotations

import ctypes
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np

from shared.audio import Samples
from shared.errors import EngineError

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_PHONEMES_IPA = 0x02
_ENDPAUSE = 0x1000
_PARAM = {"rate": 1, "volume": 2, "pitch": 3, "range": 4}
_LOCK = threading.Lock()
_SYNTH_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.c_void_p)
# Punctuation that ends an eSpeak clause; kept in the phoneme string (piper voices use it).
_CLAUSE_END = re.compile(r"([.,;:!?]+)")


@dataclass
class _Engine:
    lib: ctypes.CDLL
    sample_rate: int
    voice: str = ""
    chunks: list[Samples] | None = None
    callback: object = None


@cache
def _engine() -> _Engine:
    try:
        import espeakng_loader
    except ImportError as exc:
        raise EngineError("eSpeak NG is missing; install it with: pip install espeakng-loader") from exc
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
    lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int,
                                          ctypes.c_int]
    data = espeakng_loader.get_data_path().encode()
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
    if rate <= 0:
        raise EngineError(f"eSpeak NG failed to initialize (data at {data.decode()})")
    engine = _Engine(lib=lib, sample_rate=int(rate))

    def on_audio(wav: ctypes._Pointer[ctypes.c_short], n: int, _events: int | None) -> int:
        if n > 0 and engine.chunks is not None:
            engine.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).astype(np.float32) / 32768)
        return 0

    engine.callback = _SYNTH_CB(on_audio)  # keep a reference: ctypes does not
    lib.espeak_SetSynthCallback(engine.callback)
    return engine


def _set_voice(engine: _Engine, voice: str) -> None:
    if engine.voice != voice:
        if engine.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise EngineError(f"eSpeak NG has no voice '{voice}'")
        engine.voice = voice


def phonemize(text: str, voice: str = "en-us") -> list[str]:
    """IPA phonemes of ``text``, one string per sentence, clause punctuation kept.

    U+200D joiners are dropped; the punctuation that ended each clause follows its phonemes.
    """
    sentences: list[str] = []
    current = ""
    for clause, punct in _clauses(text):
        ipa = _clause_ipa(clause, voice)
        if ipa:
            current += (" " if current else "") + ipa
        if punct:
            current += punct
            if any(p in punct for p in ".!?"):
                sentences.append(current.strip())
                current = ""
    if current.strip():
        sentences.append(current.strip())
    return sentences


def _clauses(text: str) -> Iterator[tuple[str, str]]:
    parts = _CLAUSE_END.split(text)
    for i in range(0, len(parts), 2):
        clause = parts[i].strip()
        punct = parts[i + 1] if i + 1 < len(parts) else ""
        if clause or punct:
            yield clause, punct[:1] if punct else ""


def _clause_ipa(clause: str, voice: str) -> str:
    if not clause:
        return ""
    with _LOCK:
        engine = _engine()
        _set_voice(engine, voice)
        buf = ctypes.c_char_p(clause.encode("utf-8"))
        ptr = ctypes.pointer(buf)
        pieces = []
        while ptr.contents.value:
            out = engine.lib.espeak_TextToPhonemes(ptr, _CHARS_UTF8, _PHONEMES_IPA)
            if out:
                pieces.append(out.decode("utf-8", errors="replace"))
    return " ".join(p.strip() for p in pieces if p.strip()).replace("\u200d", "")


def synthesize(
    text: str, voice: str = "en-us", rate_wpm: int = 175, pitch: int = 50
) -> tuple[Samples, int]:
    """Formant-synthesized speech of ``text`` as float32 mono, with its sample rate."""
    with _LOCK:
        engine = _engine()
        _set_voice(engine, voice)
        engine.lib.espeak_SetParameter(_PARAM["rate"], int(rate_wpm), 0)
        engine.lib.espeak_SetParameter(_PARAM["pitch"], int(pitch), 0)
        engine.chunks = []
        data = text.encode("utf-8") + b"\0"
        err = engine.lib.espeak_Synth(data, len(data), 0, 0, 0, _CHARS_UTF8 | _ENDPAUSE, None, None)
        engine.lib.espeak_Synchronize()
        chunks, engine.chunks = engine.chunks, None
    if err != 0:
        raise EngineError(f"eSpeak NG could not speak the text (error {err})")
    audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    return audio.astype(np.float32), engine.sample_rate
