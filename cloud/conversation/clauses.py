"""Cut a stream of LLM text into clauses that can be spoken one at a time.

The first clause of a reply is cut as early as possible: at the first ``, ; : . ! ?`` once it
holds ``first_min_words`` words, or at a word boundary after ``first_max_words`` words when no
punctuation comes. Later clauses are cut at sentence ends, at clause punctuation once they hold
``min_words``, or at a word boundary after ``max_words``. The segmenter counts sentences and
reports ``done`` once ``max_sentences`` are out, so the caller can stop generating.
``raw_out`` keeps the clauses as generated (newlines, markdown): the text that, put back in
the next prompt, matches what the model's cache holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SENTENCE_END = ".!?"
_CLAUSE_END = ",;:" + _SENTENCE_END
# Markdown and symbols a voice should not read out.
_UNSPOKEN = re.compile(r"[*_#`~<>\[\]{}|\\]+")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class ClausePolicy:
    """Where clauses may be cut, and how many sentences a reply may have."""

    first_min_words: int = 2
    first_max_words: int = 4
    min_words: int = 4
    # Later clauses are spoken while earlier ones play, so they may be long: cutting them
    # mid-sentence only spoke half sentences when the reply hit its token budget.
    max_words: int = 18
    max_sentences: int = 3


class ClauseSegmenter:
    """Push text pieces in; complete clauses come out. ``flush`` returns the remainder."""

    def __init__(self, policy: ClausePolicy | None = None) -> None:
        self.policy = policy or ClausePolicy()
        self._buffer = ""  # newlines made spaces
        self._raw = ""  # the same text as generated
        self.raw_out = ""  # the generated text of every clause returned so far
        self.clauses_out = 0
        self.sentences_out = 0

    @property
    def done(self) -> bool:
        """True once the reply holds ``max_sentences`` sentences: stop generating."""
        return self.sentences_out >= self.policy.max_sentences

    def push(self, text: str) -> list[str]:
        """Add generated text; return the clauses it completed (cleaned, in order)."""
        if self.done:
            return []
        self._buffer += text.replace("\n", " ")
        self._raw += text
        out: list[str] = []
        while not self.done and (cut := self._find_cut()) is not None:
            self._emit(cut, out)
        return out

    def flush(self) -> list[str]:
        """The end of the reply: whatever is left, as one last clause (if it has words)."""
        out: list[str] = []
        if not self.done:
            self._emit(len(self._buffer), out)
        self.drop_rest()
        return out

    def drop_rest(self) -> None:
        """Forget the text not cut into a clause (a reply cut short keeps whole sentences)."""
        self._buffer = self._raw = ""

    def _emit(self, cut: int, out: list[str]) -> None:
        clause = clean_clause(self._buffer[:cut])
        self.raw_out += self._raw[:cut]
        self._buffer, self._raw = self._buffer[cut:], self._raw[cut:]
        if not clause:
            return
        out.append(clause)
        self.clauses_out += 1
        if clause[-1] in _SENTENCE_END:
            self.sentences_out += 1

    def _find_cut(self) -> int | None:
        """Index just past the clause to cut now, or None to wait for more text."""
        text = self._buffer
        first = self.clauses_out == 0
        p = self.policy
        words = 0
        in_word = False
        for i, ch in enumerate(text):
            if ch.isspace():
                if in_word:
                    words += 1
                    in_word = False
                    if words >= (p.first_max_words if first else p.max_words):
                        return i
                continue
            in_word = True
            if ch in _CLAUSE_END and _ends_here(text, i):
                count = words + 1
                needed = 1 if ch in _SENTENCE_END and not first else (
                    p.first_min_words if first else p.min_words)
                if count >= needed:
                    return i + 1
        return None


def _ends_here(text: str, i: int) -> bool:
    """Punctuation at ``i`` ends a clause: a space follows, or it is the last character so
    far and follows a letter (after a digit, wait: "3.50", "1,000")."""
    if i + 1 < len(text):
        return text[i + 1].isspace()
    return i > 0 and not text[i - 1].isdigit()


def clean_clause(text: str) -> str:
    """Drop markdown symbols and collapse spaces; '' when nothing speakable is left."""
    cleaned = _SPACES.sub(" ", _UNSPOKEN.sub(" ", text)).strip()
    return cleaned if any(ch.isalnum() for ch in cleaned) else ""


def word_count(text: str) -> int:
    """Words separated by whitespace."""
    return len(text.split())
