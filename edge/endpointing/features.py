"""Interpretable end-of-turn evidence: how the partial transcript ends, and its prosody.

The pause so far enters the detector separately (``detector.py``). The text cues are about
the *ending* of the partial transcript, the way a listener hears it: a sentence mark (. ? !)
vs a comma or an ellipsis (whisper writes "..." for a trailing-off voice); a last word that
cannot end an English sentence (a conjunction, a determiner, a preposition, a modal); a
filler; a turn that is only a greeting or a vocative ("Hello!", "Hi there,", "Okay so"); an
open list ("milk, eggs,") or list items heard as sentences ("Rome. Florence."). Whisper's
repetition loops are cut first. Prosody gives the final pitch movement, the loudness decay,
the lengthening of the last syllable and the speech time so far. All values are finite.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

CONJUNCTIONS = frozenset({
    "and", "but", "or", "so", "because", "cause", "cos", "if", "when", "while", "although",
    "though", "unless", "until", "since", "nor", "plus", "whether", "than", "whereas", "then",
})
FUNCTION_WORDS = frozenset({
    "the", "a", "an", "my", "your", "his", "our", "their", "its", "to", "of", "with", "for",
    "from", "at", "in", "on", "into", "onto", "about", "by", "near", "without", "between",
    "through", "towards", "toward", "under", "over", "across", "against", "via", "per",
    "is", "are", "was", "were", "am", "can", "could", "would", "will", "should", "shall",
    "might", "must", "i", "i'm", "i'd", "i'll", "i've", "we're", "you're", "let's", "very",
    "each", "every", "whose", "what's", "where's", "there's", "it's", "that's", "just",
})
FILLERS = frozenset({
    "um", "uh", "er", "erm", "hmm", "hm", "mm", "uhm", "umm", "uhh", "ah", "eh", "like", "well",
    "basically", "actually", "anyway", "mean", "know",
})
GREETINGS = frozenset({
    "hello", "hi", "hey", "hiya", "howdy", "greetings", "morning", "afternoon", "evening",
    "good", "excuse", "me", "sorry", "pardon", "there", "okay", "ok", "alright", "right", "so",
    "well", "um", "uh", "er", "erm", "hmm", "oh", "yo", "parley", "listen", "look",
})
_OPENERS = frozenset({"hello", "hi", "hey", "hiya", "howdy", "greetings", "morning",
                      "afternoon", "evening", "excuse", "sorry", "pardon", "so", "um", "uh",
                      "er", "erm", "hmm", "well"})
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_TRAILING = re.compile(r"[\s\"')\]]+$")
_LOOP_WINDOW = 48
_HALLUCINATIONS = frozenset({"you", "thanks for watching"})

STATES: tuple[str, ...] = (
    "empty", "greeting", "hanging", "trailing", "list", "question", "statement", "unpunctuated",
)
_COMPLETE_LOOKING = ("question", "statement", "unpunctuated")
TEXT_FEATURES: tuple[str, ...] = (
    *(f"text_{s}" for s in STATES), "log_words",
    *(f"{s}_x_log_speech" for s in _COMPLETE_LOOKING),
)
PROSODY_FEATURES: tuple[str, ...] = (
    "f0_final_slope", "f0_final_level", "energy_decay", "final_lengthening", "log_speech_s",
    "question_x_f0_final_slope",  # a rise after "?" is a question; after anything else, more
)
FEATURE_NAMES: tuple[str, ...] = TEXT_FEATURES + PROSODY_FEATURES


@dataclass(frozen=True, slots=True)
class TextCues:
    """How the partial transcript ends."""

    words: tuple[str, ...]
    ending: str  # "sentence", "question", "comma", "ellipsis" or "" (no mark)
    last_class: str  # "conjunction", "function", "filler" or "" (a content word)
    greeting_only: bool
    open_list: bool
    fragment: bool  # a last "sentence" of one or two words after another: "Rome. Florence."

    @property
    def state(self) -> str:
        """One of ``STATES``: what the ending says, strongest cue first."""
        if not self.words:
            return "empty"
        if self.greeting_only:
            return "greeting"
        if self.last_class:
            return "hanging"
        if self.ending in ("comma", "ellipsis"):
            return "trailing"
        if self.open_list or self.fragment:
            return "list"
        if self.ending == "question":
            return "question"
        return "statement" if self.ending == "sentence" else "unpunctuated"


@lru_cache(maxsize=256)
def text_cues(text: str | None) -> TextCues:
    """Read the ending of a partial transcript (whisper's casing and punctuation welcome).

    Cached: the policy asks about the same partial transcript every 50 ms of a pause."""
    raw = unloop(_TRAILING.sub("", (text or "").strip().lower()))
    words = tuple(w for w in _WORD.findall(raw.replace("\u2019", "'")))
    if " ".join(words) in _HALLUCINATIONS and not raw.endswith("?"):
        words = ()  # whisper's usual output for a breath or a click
    ending = _ending(raw)
    return TextCues(words=words, ending=ending, last_class=_last_class(words, ending),
                    greeting_only=_greeting_only(words), open_list=_open_list(raw),
                    fragment=_fragment(raw))


def unloop(text: str) -> str:
    """Whisper's repetition loop cut to its first copy: "call my wife. call my wife. call my"
    -> "call my wife."; "milk eggs eggs eggs" -> "milk eggs" (a cut-off last word counts)."""
    words = text.split()
    head, tokens = words[:-_LOOP_WINDOW], words[-_LOOP_WINDOW:]  # bounded cost
    n = len(tokens)
    for start in range(n):
        for period in range(1, (n - start) // 2 + 1):
            if _periodic(tokens, start, period):
                return " ".join(head + tokens[:start + period])
    return text


def _periodic(tokens: list[str], start: int, period: int) -> bool:
    last = len(tokens) - 1
    for i in range(start, len(tokens) - period):
        a, b = tokens[i], tokens[i + period]
        if a != b and not (i + period == last and a.startswith(b)):
            return False
    return True


def _ending(raw: str) -> str:
    if raw.endswith(("...", "…")):
        return "ellipsis"
    if raw.endswith("?"):
        return "question"
    if raw.endswith((".", "!")):
        return "sentence"
    if raw.endswith((",", ";", ":", "-", "\u2013", "\u2014")):
        return "comma"
    return ""


def _last_class(words: tuple[str, ...], ending: str) -> str:
    if not words:
        return ""
    last = words[-1]
    if last == "like" and ending == "question":
        return ""  # "What's the weather like?"
    if words[-2:] in (("you", "know"), ("i", "mean")) or last in FILLERS - {"know", "mean"}:
        return "filler"
    if last in CONJUNCTIONS:
        return "conjunction"
    return "function" if last in FUNCTION_WORDS else ""


def _greeting_only(words: tuple[str, ...]) -> bool:
    """Only greetings, fillers and at most one name after them: "Hi Anna", "Okay so"."""
    if not words or len(words) > 4:
        return False
    others = [w for w in words if w not in GREETINGS]
    if not others:
        return any(w in _OPENERS for w in words)
    return len(others) == 1 and words[0] in _OPENERS and words[-1] == others[0]


def _open_list(raw: str) -> bool:
    """Short comma-separated items with no "and"/"or" before the last one yet.

    "milk, eggs," and "milk, eggs, butter" are open; "milk, eggs and bread" is closed.
    """
    trailing_comma = raw.rstrip().endswith(",")
    items = [_WORD.findall(i) for i in re.split(r"[,;]", raw.rstrip(".!?…, "))]
    items = [i for i in items if i]
    needed = 2 if trailing_comma else 3
    if len(items) < needed or any(len(i) > 3 for i in items[1:]):
        return False
    return items[-1][0] not in ("and", "or")


def _fragment(raw: str) -> bool:
    """Whisper writes list items it hears apart as sentences: "We visited Rome. Florence."."""
    sentences = [_WORD.findall(s) for s in re.split(r"[.!?]+", raw)]
    sentences = [s for s in sentences if s]
    return len(sentences) >= 2 and len(sentences[-1]) <= 2


def prosody_vector(prosody: Any) -> list[float]:
    """Final pitch movement and level, loudness decay, lengthening and speech time.

    Accepts ``edge.prosody.ProsodyFeatures``, the wire ``shared.protocol.Prosody`` (fewer
    fields: the missing ones count as neutral) or ``None`` (all neutral).
    """
    slope_st = _get(prosody, "f0_final_slope_st_s")
    if slope_st is None:  # the wire form has the slope in Hz/s and the mean
        hz, mean = _get(prosody, "f0_final_slope_hz_per_s"), _get(prosody, "f0_mean_hz")
        slope_st = 17.31 * hz / mean if hz is not None and mean else 0.0
    speech_s = _get(prosody, "speech_s") or 0.0
    return [
        _clip(slope_st, 30.0) / 10.0,
        _clip(_get(prosody, "f0_final_st") or 0.0, 8.0) / 4.0,
        _clip(_get(prosody, "energy_final_decay_db") or 0.0, 20.0) / 10.0,
        _clip((_get(prosody, "final_lengthening") or 1.0) - 1.0, 3.0),
        math.log1p(max(0.0, speech_s)),
    ]


def feature_vector(text: str | None, prosody: Any) -> npt.NDArray[np.float64]:
    """All features in the order of ``FEATURE_NAMES``."""
    cues = text_cues(text)
    state = cues.state
    prosodic = prosody_vector(prosody)
    log_speech = prosodic[-1]
    values = [
        *(float(state == s) for s in STATES), math.log1p(len(cues.words)),
        *(float(state == s) * log_speech for s in _COMPLETE_LOOKING),
        *prosodic, float(state == "question") * prosodic[0],
    ]
    return np.asarray(values, dtype=np.float64)


def _get(obj: Any, name: str) -> float | None:
    value = getattr(obj, name, None)
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _clip(value: float, limit: float) -> float:
    return max(-limit, min(limit, value))
