"""How the way a user spoke changes the reply (pure, table-free thresholds in one policy).

Three behaviours a user notices:

* **Rising final pitch means a question.** When the pitch rises at the end of the turn
  (``f0_final_slope_hz_per_s`` >= ``question_slope_hz_per_s``) and the text does not already end
  with "?", the user's words go into the prompt as a question ("You're open on Sunday?").
* **Fast speech gets shorter answers.** At ``fast_rate_wps`` words/s or more the reply is cut to
  ``fast_max_sentences`` sentence(s) and ``fast_max_tokens`` tokens; otherwise
  ``max_sentences`` / ``max_tokens``.
* **The user's speaking rate sets the voice's speed.** ``tts_speed = rate / typical_rate_wps``,
  clamped to ``[min_tts_speed, max_tts_speed]`` (1.0 when the rate is unknown).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.protocol import Prosody

_SENTENCE_END = ".!?"


@dataclass(frozen=True, slots=True)
class ProsodyPolicy:
    """Thresholds of the prosody-driven behaviours."""

    question_slope_hz_per_s: float = 20.0
    fast_rate_wps: float = 3.6
    typical_rate_wps: float = 2.7
    min_tts_speed: float = 0.85
    max_tts_speed: float = 1.25
    max_sentences: int = 2
    max_tokens: int = 36
    fast_max_sentences: int = 1
    fast_max_tokens: int = 24


@dataclass(frozen=True, slots=True)
class ReplyStyle:
    """What the prosody decided for one reply."""

    user_text: str  # the user's words as they go into the prompt
    treated_as_question: bool
    max_sentences: int
    max_tokens: int
    tts_speed: float


def reply_style(text: str, prosody: Prosody | None, policy: ProsodyPolicy) -> ReplyStyle:
    """Decide the reply's shape from the user's words and how they were said."""
    prosody = prosody or Prosody()
    words = text.strip()
    question = _rising(prosody, policy) and not words.endswith("?") and bool(words)
    if question:
        words = words.rstrip(_SENTENCE_END + ",;: ") + "?"
    rate = prosody.speaking_rate_wps
    fast = rate is not None and rate >= policy.fast_rate_wps
    return ReplyStyle(
        user_text=words,
        treated_as_question=question,
        max_sentences=policy.fast_max_sentences if fast else policy.max_sentences,
        max_tokens=policy.fast_max_tokens if fast else policy.max_tokens,
        tts_speed=tts_speed(rate, policy),
    )


def tts_speed(rate_wps: float | None, policy: ProsodyPolicy) -> float:
    """Voice speed following the user's speaking rate, within the policy's bounds."""
    if rate_wps is None or rate_wps <= 0.0:
        return 1.0
    speed = rate_wps / policy.typical_rate_wps
    return round(min(policy.max_tts_speed, max(policy.min_tts_speed, speed)), 3)


def _rising(prosody: Prosody, policy: ProsodyPolicy) -> bool:
    slope = prosody.f0_final_slope_hz_per_s
    return slope is not None and slope >= policy.question_slope_hz_per_s
