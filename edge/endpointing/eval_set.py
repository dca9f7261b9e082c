"""The end-of-turn evaluation set, synthesized by the repo itself (nothing is downloaded).

Every item is one user turn at 16 kHz: a little lead-in silence, the spoken pieces with the
mid-turn pauses between them (0.3-1.0 s between the true ends of speech, after a greeting, a
filler, a conjunction or a list item), then 2.5 s of silence. Pieces are synthesized one by
one in one voice, rate and pitch per turn (the ten eSpeak NG voices of ``models.corpus``; in
the test split also the piper voice when it is built, a voice the detector never trained on)
and concatenated here, so the true speech boundaries are known to the sample. A piece that
hangs ("I want the pasta and") is sometimes synthesized with a trailing "," or "..." to vary
its intonation. Levels vary over 12 dB; a faint noise floor is added.

``train`` and ``test`` use different sentences (see ``material.py``); a set built in a fresh
process is the same every time (eSpeak's random generator is seeded per piece; piper's
synthesis is random, hence test split only). Built sets are cached under
``models/build/endpointing-eval/`` (gitignored).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from edge.endpointing import material
from models.corpus import ESPEAK_VOICES, espeak_utterance
from shared.audio import PROCESSING_RATE, Samples

SET_VERSION = "2"
Split = Literal["train", "test"]
Kind = Literal["complete", "greeting", "filler", "conjunction", "list"]
PAUSED_KINDS: tuple[Kind, ...] = ("greeting", "filler", "conjunction", "list")
PIPER = "piper"
TAIL_S = 2.5
PAUSE_RANGE_S = (0.3, 1.0)

_ESPEAK_READY: list[bool] = []
Synth = Callable[[str, str, float, int], Samples]  # (text, voice, rate, pitch) -> 16 kHz audio


@dataclass(frozen=True, slots=True)
class Span:
    """One spoken piece: samples [start, end) hold speech, ``text`` is what was said."""

    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class EvalItem:
    """One synthesized user turn with its true speech spans."""

    item_id: str
    kind: Kind
    voice: str
    rate: float  # words per minute (eSpeak) or speed factor (piper)
    audio: Samples
    spans: tuple[Span, ...]

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.spans)

    @property
    def speech_end(self) -> int:
        """The sample where the turn truly ends."""
        return self.spans[-1].end

    @property
    def pauses(self) -> list[tuple[int, int]]:
        """The mid-turn pauses as (start, end) samples."""
        return [(a.end, b.start) for a, b in zip(self.spans, self.spans[1:], strict=False)]


def voices(split: Split) -> tuple[str, ...]:
    """The voices of a split: eSpeak NG's, plus, in the test split, the piper voice when it can
    be synthesized here (a voice the detector never trained on; piper's synthesis is random,
    and the training split must be rebuilt identically)."""
    if split == "test" and _piper() is not None:
        return (*ESPEAK_VOICES, PIPER)
    return ESPEAK_VOICES


def load_set(split: Split, n_complete: int, n_paused: int, seed: int = 0,
             cache_dir: Path | None = None) -> list[EvalItem]:
    """The cached set if it was built with the same parameters, else build and cache it."""
    key = _key(split, n_complete, n_paused, seed)
    path = (cache_dir or default_cache_dir()) / f"{split}-{key}.npz"
    if path.is_file():
        return _read(path)
    items = build_set(split, n_complete, n_paused, seed)
    _write(path, items)
    return items


def default_cache_dir() -> Path:
    from models import registry

    return registry.models_dir() / "endpointing-eval"


def build_set(split: Split, n_complete: int, n_paused: int, seed: int = 0) -> list[EvalItem]:
    """``n_complete`` complete turns, then ``n_paused`` paused ones (the kinds in turn)."""
    rng = random.Random(f"{split}-{seed}")
    synth = _synthesizer()
    pool = voices(split)
    items: list[EvalItem] = []
    for i in range(n_complete):
        sentence = material.COMPLETE[split][i % len(material.COMPLETE[split])]
        items.append(compose(f"{split}-c{i}", "complete", [sentence], rng, synth, pool=pool))
    for i in range(n_paused):
        kind = PAUSED_KINDS[i % len(PAUSED_KINDS)]
        pieces = _paused_pieces(kind, split, i // len(PAUSED_KINDS), rng)
        items.append(compose(f"{split}-p{i}", kind, pieces, rng, synth, pool=pool))
    return items


def demo_item(greeting: str = "Hello!", question: str = "What time do you close?",
              pause_s: float = 0.6, voice: str = "en-us", rate: float = 170) -> EvalItem:
    """The demo's sample: a greeting, a pause, then the question — one turn."""
    rng = random.Random(0)
    return compose("demo", "greeting", [greeting, question], rng, _synthesizer(),
                   voice=voice, rate=rate, pauses_s=[pause_s])


def compose(item_id: str, kind: Kind, pieces: Sequence[str], rng: random.Random, synth: Synth,
            voice: str | None = None, rate: float | None = None,
            pauses_s: Sequence[float] | None = None,
            pool: Sequence[str] = ESPEAK_VOICES) -> EvalItem:
    """Synthesize ``pieces`` in one voice (from ``pool`` unless given) and join them with
    pauses (random unless given)."""
    voice = voice or rng.choice(pool)
    rate = rate or (rng.uniform(0.85, 1.2) if voice == PIPER else float(rng.randint(130, 210)))
    pitch = rng.randint(35, 65)
    gain = 10 ** (rng.uniform(-12.0, 0.0) / 20)
    out: list[Samples] = [_silence(rng.uniform(0.3, 0.7))]
    spans: list[Span] = []
    at = out[0].size
    for i, piece in enumerate(pieces):
        audio, start, end = _speech(synth(_spoken(piece, rng), voice, rate, pitch) * gain)
        if i:  # the silence between the true ends of speech lasts exactly the pause
            pause = pauses_s[i - 1] if pauses_s else rng.uniform(*PAUSE_RANGE_S)
            out.append(_silence(max(0.0, pause - (at - spans[-1].end + start) / PROCESSING_RATE)))
            at += out[-1].size
        out.append(audio)
        spans.append(Span(at + start, at + end, piece))
        at += audio.size
    out.append(_silence(TAIL_S))
    signal = np.concatenate(out)
    noise = np.random.default_rng(rng.getrandbits(32)).standard_normal(signal.size)
    signal = signal + noise.astype(np.float32) * 10 ** (rng.uniform(-70.0, -58.0) / 20)
    return EvalItem(item_id, kind, voice, float(rate), signal.astype(np.float32), tuple(spans))


def _paused_pieces(kind: Kind, split: Split, i: int, rng: random.Random) -> list[str]:
    if kind == "greeting":
        return [rng.choice(material.GREETINGS[split]), rng.choice(material.QUESTIONS[split])]
    if kind == "filler":
        if rng.random() < 0.3:
            return list(rng.choice(material.MID_FILLERS[split]))
        return [rng.choice(material.FILLERS[split]), rng.choice(material.QUESTIONS[split])]
    if kind == "conjunction":
        turns = material.HANGING[split]
        return list(turns[i % len(turns)])
    turns = material.LISTS[split]
    opener, *items = turns[i % len(turns)]
    if rng.random() < 0.5:  # pause after the first item only, or after every item
        return [opener, " ".join(items)]
    return [opener, *items]


def _spoken(piece: str, rng: random.Random) -> str:
    """The text given to the synthesizer: a piece that hangs may trail off with , or ..."""
    if piece[-1].isalpha() and rng.random() < 0.4:
        return piece + rng.choice([",", "..."])
    return piece


def _speech(audio: Samples) -> tuple[Samples, int, int]:
    """``audio`` and the bounds of its speech (1 ms frames within 40 dB of the loudest)."""
    x = np.asarray(audio, dtype=np.float32)
    n = x.size // 16
    if n == 0:
        return x, 0, x.size
    rms = np.sqrt(np.mean(np.square(x[: n * 16].reshape(n, 16)), axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (-40 / 20))
    return x, int(loud[0]) * 16, int(loud[-1] + 1) * 16


def _silence(seconds: float) -> Samples:
    return np.zeros(round(seconds * PROCESSING_RATE), dtype=np.float32)


def _synthesizer() -> Synth:
    piper = _piper()

    def synth(text: str, voice: str, rate: float, pitch: int) -> Samples:
        if voice == PIPER and piper is not None:
            return piper(text, rate)
        _seed_espeak(f"{text}|{voice}|{rate}|{pitch}", voice)
        return espeak_utterance(text, voice=voice, rate_wpm=int(rate), pitch=pitch).audio

    return synth


def _seed_espeak(key: str, voice: str) -> None:
    """eSpeak NG varies its voices with random numbers and keeps state between utterances:
    reload the voice and seed the generator per piece, so that the set is the same every time
    it is built (``espeak_ng_SetRandSeed``, and the C library's ``srand``)."""
    import espeakng_loader

    from cloud.engines import espeak

    if not _ESPEAK_READY:  # initialize the engine first: initializing seeds it from the clock
        espeak.phonemize("a")
        _ESPEAK_READY.append(True)
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")
    lib = ctypes.CDLL(espeakng_loader.get_library_path())  # the handle eSpeak already uses
    lib.espeak_SetVoiceByName(voice.encode())
    if hasattr(lib, "espeak_ng_SetRandSeed"):
        lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
    ctypes.CDLL(None).srand(ctypes.c_uint(seed))


def _piper() -> Callable[[str, float], Samples] | None:
    from models import corpus, registry

    fn = getattr(corpus, "piper_utterance", None)
    if fn is None:
        return None
    try:
        spec = registry.default_spec("tts")
        if not registry.status(spec).ready:
            return None
    except Exception:  # any registry trouble means "no piper here"
        return None
    return lambda text, speed: fn(text, speed=speed).audio


def _key(split: Split, n_complete: int, n_paused: int, seed: int) -> str:
    desc = json.dumps([SET_VERSION, split, n_complete, n_paused, seed, voices(split),
                       _material_digest()])
    return hashlib.sha256(desc.encode()).hexdigest()[:12]


def _material_digest() -> str:
    text = Path(material.__file__).read_text(encoding="utf-8")
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _write(path: Path, items: list[EvalItem]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = [{"id": it.item_id, "kind": it.kind, "voice": it.voice, "rate": it.rate,
             "spans": [[s.start, s.end, s.text] for s in it.spans]} for it in items]
    audio = np.concatenate([it.audio for it in items])
    offsets = np.cumsum([0] + [it.audio.size for it in items])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, audio=np.clip(audio * 32768, -32768, 32767).astype(np.int16),
             offsets=offsets, meta=np.array(json.dumps(meta)))
    tmp.replace(path)


def _read(path: Path) -> list[EvalItem]:
    with np.load(path) as data:
        audio = data["audio"].astype(np.float32) / 32768
        offsets = data["offsets"]
        meta = json.loads(str(data["meta"]))
    return [EvalItem(m["id"], m["kind"], m["voice"], float(m["rate"]),
                     audio[offsets[i]:offsets[i + 1]],
                     tuple(Span(int(a), int(b), t) for a, b, t in m["spans"]))
            for i, m in enumerate(meta)]
