"""Transcript comparison: text normalization and word error rate (WER).

Both sides of a comparison go through ``normalize_text``: lowercase, punctuation removed,
numbers spelled out as words ("42" -> "forty two", "7:30" -> "seven thirty", "2nd" ->
"second"), hyphens split, apostrophes dropped ("o'clock" -> "oclock") and common British
spellings mapped to American ones, so that "centre" and "center" or "7" and "seven" count as
the same word. WER is the word-level Levenshtein distance divided by the reference length.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((1_000_000_000, "billion"), (1_000_000, "million"), (1000, "thousand"))
_ORDINALS = {"one": "first", "two": "second", "three": "third", "five": "fifth",
             "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}
_SYMBOLS = {"%": " percent ", "&": " and ", "+": " plus ", "@": " at "}
_CURRENCY = {"$": "dollars", "£": "pounds", "€": "euros"}

# British -> American spellings that speech recognizers commonly disagree on.
_SPELLING = {
    "centre": "center", "centres": "centers", "theatre": "theater", "theatres": "theaters",
    "metre": "meter", "metres": "meters", "litre": "liter", "litres": "liters",
    "neighbour": "neighbor", "neighbours": "neighbors", "neighbour's": "neighbor's",
    "colour": "color", "colours": "colors", "favourite": "favorite", "favour": "favor",
    "flavour": "flavor", "honour": "honor", "humour": "humor", "labour": "labor",
    "behaviour": "behavior", "harbour": "harbor", "rumour": "rumor", "organise": "organize",
    "realise": "realize", "recognise": "recognize", "apologise": "apologize",
    "travelling": "traveling", "travelled": "traveled", "cancelled": "canceled",
    "cancelling": "canceling", "jewellery": "jewelry", "grey": "gray", "programme": "program",
    "catalogue": "catalog", "cheque": "check", "tyre": "tire", "tyres": "tires",
    "aeroplane": "airplane", "defence": "defense", "licence": "license", "practise": "practice",
    "mum": "mom", "okay": "ok",
}

_NUMBER = re.compile(r"([$£€]?)(\d[\d,]*(?:\.\d+)?)(st|nd|rd|th)?\b")
_TIME = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_NON_WORD = re.compile(r"[^a-z0-9' ]+")


def number_to_words(n: int) -> str:
    """Spell a non-negative integer in English words ("forty two", "one hundred five")."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {number_to_words(rest)}" if rest else "")
    for value, name in _SCALES:
        if n >= value:
            high, rest = divmod(n, value)
            return f"{number_to_words(high)} {name}" + (
                f" {number_to_words(rest)}" if rest else "")
    raise AssertionError("unreachable")


def _ordinal(words: str) -> str:
    head, _, last = words.rpartition(" ")
    if last in _ORDINALS:
        last = _ORDINALS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head} {last}".strip()


def _spell_number(match: re.Match[str]) -> str:
    currency, digits, suffix = match.group(1), match.group(2).replace(",", ""), match.group(3)
    whole, _, fraction = digits.partition(".")
    words = number_to_words(int(whole))
    if fraction:
        words += " point " + " ".join(_ONES[int(d)] for d in fraction)
    if suffix:
        words = _ordinal(words)
    if currency:
        words += f" {_CURRENCY[currency]}"
    return f" {words} "


def _spell_time(match: re.Match[str]) -> str:
    hours, minutes = int(match.group(1)), int(match.group(2))
    if minutes == 0:
        return f" {number_to_words(hours)} "
    filler = " oh" if minutes < 10 else ""
    return f" {number_to_words(hours)}{filler} {number_to_words(minutes)} "


def normalize_text(text: str) -> str:
    """Lowercase, spell numbers, drop punctuation; the form WER is computed on."""
    text = text.lower().replace("\u2019", "'")
    for symbol, word in _SYMBOLS.items():
        text = text.replace(symbol, word)
    text = _TIME.sub(_spell_time, text)
    text = _NUMBER.sub(_spell_number, text)
    text = text.replace("-", " ")
    words = _NON_WORD.sub(" ", text).split()
    words = [_SPELLING.get(w, w) for w in words]
    return " ".join(w.replace("'", "") for w in words if w.strip("'"))


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Levenshtein distance between two word sequences (substitutions, insertions, deletions)."""
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(word edits, reference word count) after normalizing both texts."""
    r, h = normalize_text(ref).split(), normalize_text(hyp).split()
    return edit_distance(r, h), len(r)


def word_error_rate(ref: str, hyp: str) -> float:
    """WER of ``hyp`` against ``ref``; an empty reference gives 0.0 only for an empty hyp."""
    errors, words = word_errors(ref, hyp)
    if words == 0:
        return 0.0 if errors == 0 else 1.0
    return errors / words


def corpus_word_error_rate(pairs: Iterable[tuple[str, str]]) -> float:
    """Total edits over total reference words of many (reference, hypothesis) pairs."""
    errors = words = 0
    for ref, hyp in pairs:
        e, w = word_errors(ref, hyp)
        errors, words = errors + e, words + w
    return errors / words if words else 0.0
