"""eSpeak NG through ctypes (the library and data ship in the ``espeakng-loader`` wheel).

Two uses: IPA phonemes for piper voices (sherpa-onnx 2.x no longer phonemizes them), and
plain formant-synthesized speech in many voices for the evaluation corpora the project builds.
libespeak-ng keeps global state and is not thread-safe: every call holds one process lock.
It also seeds its random generator (breathy and klatt voices use it) from the clock; we seed
it once with 0, so a process that makes the same calls renders the same audio. A rendering
still depends on what the process synthesized before (state the library never resets), so
audio that must not vary is rendered first thing in a fresh process (see the AEC tests).
"""

from __future__ import annotations

import ctypes
import re
import threading
import unicodedata
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
        raise EngineError(
            "eSpeak NG is missing; install it with: pip install espeakng-loader"
        ) from exc
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
    seed = getattr(lib, "espeak_ng_SetRandSeed", None)  # libespeak-ng >= 1.52
    if seed is not None:
        seed(0)

    def on_audio(wav: ctypes._Pointer[ctypes.c_short], n: int, _events: int | None) -> int:
        if n > 0 and engine.chunks is not None:
            pcm = np.ctypeslib.as_array(wav, shape=(n,))
            engine.chunks.append(np.asarray(pcm / 32768, dtype=np.float32))
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

    The text is first made speakable (see ``speakable``); it is cut into clauses only at
    punctuation that ends a word, so "$5.50", "3,000", "10:30", "example.com" and "Dr. Smith"
    stay whole. Each clause's mark (``. , ; : ! ?``; dashes become commas) follows its phonemes,
    as piper voices were trained; U+200D joiners are dropped.
    """
    sentences: list[str] = []
    current = ""
    for clause, mark in clauses(speakable(text)):
        ipa = _clause_ipa(clause, voice)
        if ipa:
            current += (" " if current else "") + ipa
        if mark and current:
            current += mark
            if mark in _SENTENCE_END:
                sentences.append(current.strip())
                current = ""
    if current.strip():
        sentences.append(current.strip())
    return sentences


def speakable(text: str) -> str:
    """``text`` with what must not reach eSpeak removed or spelled out.

    Control and format characters (a NUL would cut the C string), emoji and markdown marks
    go; a line break ends a sentence when no punctuation does; "$5.50" becomes "5 dollars 50
    cents" (eSpeak alone reads "dollar five point five zero").
    """
    kept = "".join(_speakable_char(c) for c in _TERMINAL_ESCAPE.sub("", text))
    kept = _BULLET.sub("\n", kept)
    kept = _MARKDOWN.sub(" ", _NUMBER_SIGN.sub("number ", kept))
    kept = _UNPUNCTUATED_BREAK.sub(r"\1. ", kept)
    kept = _CURRENCY.sub(_spell_money, _URL_PREFIX.sub("", kept))
    return _SPACES.sub(" ", kept).strip()


def clauses(text: str) -> list[tuple[str, str]]:
    """``text`` cut into ``(clause, mark)`` pairs; ``mark`` is one of ``.,;:!?`` or ""."""
    out: list[tuple[str, str]] = []
    start = 0
    for match in _PUNCT.finditer(text):
        end = _clause_end(text, match)
        if end < 0:
            continue
        clause = text[start:match.start()].strip()
        out.append((clause, _mark(match.group())))
        start = end
    rest = text[start:].strip()
    if rest:  # e.g. "... in the U.S." ends the text without ending a clause above
        out.append((rest, "." if rest.endswith(".") else ""))
    return [(c, m) for c, m in out if c or m]


_SENTENCE_END = frozenset(".!?")
_INITIALISM = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")  # U.S.A. e.g. i.e.
_URL_PREFIX = re.compile(r"\b(?:https?://|www\.)", re.IGNORECASE)
# Words whose final period is part of the word, not the end of a sentence.
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "prof", "jr", "sr", "st", "mt", "vs", "etc",
                            "approx", "dept"})
_DASHES = "\u2013\u2014"  # en and em dash
_PUNCT = re.compile(rf"\.{{2,}}|…|[.!?;:,]+|(?<=\s)[-{_DASHES}]{{1,2}}(?=\s)|[{_DASHES}]")
_CLOSERS = "\"')]}»\u201d\u2019"  # closing quotes and brackets
_TERMINAL_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")  # ANSI colours and cursor moves
_BULLET = re.compile(r"(?:^|\n)[ \t]*(?:[-*+•]|#+)[ \t]+")
_NUMBER_SIGN = re.compile(r"#(?=\d)")
_MARKDOWN = re.compile(r"[*`#~|\[\]{}\\^]+|(?<!\w)_+|_+(?!\w)")
_UNPUNCTUATED_BREAK = re.compile(r"([^\s.,;:!?])[ \t]*\n")
_SPACES = re.compile(r"\s+")
_CURRENCY = re.compile(
    r"(?P<cur>[$€£])\s?(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<frac>\d+))?"
    r"(?:\s?(?P<mag>thousand|million|billion|trillion)\b)?"
)
_UNITS = {"$": ("dollar", "dollars", "cent", "cents"), "€": ("euro", "euros", "cent", "cents"),
          "£": ("pound", "pounds", "penny", "pence")}
_KEEP_SYMBOLS = frozenset("°©®™§¶†‰\u2032\u2033")  # eSpeak names these


def _speakable_char(c: str) -> str:
    if c in "\n\r\u2028\u2029":
        return "\n"
    category = unicodedata.category(c)
    if category in ("Cf", "Co", "Cs", "Cn") or "\ufe00" <= c <= "\ufe0f":
        return ""  # zero-width joiners, BOMs, private use, variation selectors
    if category in ("Cc", "Zs", "Sk") or (category == "So" and c not in _KEEP_SYMBOLS):
        return " "  # tabs and other controls, odd spaces, emoji and pictographs
    return c


def _spell_money(match: re.Match[str]) -> str:
    one, many, sub_one, sub_many = _UNITS[match["cur"]]
    whole, frac, mag = match["int"], match["frac"], match["mag"]
    if mag:
        return f"{whole}{'.' + frac if frac else ''} {mag} {many}"
    unit = one if whole == "1" else many
    if frac is None:
        return f"{whole} {unit}"
    if len(frac) != 2:
        return f"{whole}.{frac} {many}"
    cents = int(frac)
    if cents == 0:
        return f"{whole} {unit}"
    return f"{whole} {unit} {cents} {sub_one if cents == 1 else sub_many}"


def _clause_end(text: str, match: re.Match[str]) -> int:
    """Where the clause ended by ``match`` stops (after closing quotes), or -1 if it does not.

    Punctuation ends a clause only at the end of a word, and a period not after "Dr" or "U.S".
    """
    after = match.end()
    while after < len(text) and text[after] in _CLOSERS:
        after += 1
    if after < len(text) and not text[after].isspace():
        return -1
    if match.group() != ".":
        return after
    before = text[:match.start()].split()
    word = before[-1].lstrip(_CLOSERS + "(") if before else ""
    abbreviation = word.lower() in _ABBREVIATIONS or _INITIALISM.fullmatch(word)
    return -1 if abbreviation else after


def _mark(punct: str) -> str:
    for mark in "?!":
        if mark in punct:
            return mark
    if punct[0] in ".…":
        return "."
    return punct[0] if punct[0] in ",;:" else ","


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
