"""The end-of-turn detector and the policy that turns its probability into decisions.

Every ~50 ms of a pause the edge asks: is the user's turn over? The detector answers with a
probability that combines two pieces of evidence, both fitted by ``train.py`` on the training
half of the synthesized evaluation set and shipped in ``model.json``:

- what was said and how: a logistic model over the interpretable features of the partial
  transcript and the prosody of the last words (``features.py``) gives the odds that a pause
  after this text is the end of the turn;
- how long the silence has lasted: mid-turn pauses rarely last long, so the odds grow by
  1 / S(pause), where S is the share of mid-turn pauses (after greetings, fillers,
  conjunctions, list items) still silent after that long. Beyond the longest mid-turn pause
  S is tiny and the probability goes to 1 whatever the text said.

P(end | text, prosody, pause) = sigmoid(logit_text_prosody - log S(pause)). The policy
says *speculate* (send the final early; the cloud may start the reply, held back on the edge)
when the probability clears a low threshold, and *commit* (the turn is over) when

- the words and the voice alone are sure enough (``text_threshold``, pause not counted): the
  turn ends the moment its transcript is known;
- or, counting the pause, the probability clears the end threshold: a doubtful ending is
  given the time mid-turn pauses take;
- or the pause reaches the hard maximum.

The two thresholds are fitted together (``train.py``). One threshold on the combined
probability cannot do both jobs: low enough to end confident turns at once, it lets the
pause term talk the policy into ending doubtful ones mid-pause; high enough not to, it makes
nearly every turn wait. The probability when the final is sent is its ``eou_confidence``.

Sans-IO and stateless: the caller owns the clock. Cost per call: a dot product over 18
features, a few set look-ups on the text (cached per transcript) and one interpolation
(``parley bench endpointing`` prints the microseconds).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.endpointing.features import FEATURE_NAMES, feature_vector
from edge.turns import TurnDecision
from shared.errors import ModelNotReadyError

MODEL_PATH = Path(__file__).with_name("model.json")


@dataclass(frozen=True, slots=True)
class EndpointModel:
    """Logistic regression over standardized features, the survival of mid-turn pauses, and
    the policy's operating point."""

    feature_names: tuple[str, ...]
    mean: npt.NDArray[np.float64]
    scale: npt.NDArray[np.float64]
    weights: npt.NDArray[np.float64]
    bias: float
    survival_ms: npt.NDArray[np.float64]  # pause lengths (ascending)
    survival: npt.NDArray[np.float64]  # share of mid-turn pauses longer than each (> 0)
    text_threshold: float  # P(end | text, prosody) that ends the turn at once
    end_threshold: float
    speculative_threshold: float
    max_pause_ms: float
    info: dict[str, Any]

    def logit(self, x: npt.NDArray[np.float64]) -> float:
        """Log-odds that a pause after this text and prosody ends the turn."""
        return float(np.dot((x - self.mean) / self.scale, self.weights)) + self.bias

    def log_survival(self, pause_ms: float) -> float:
        """log S(pause): how unusual a mid-turn pause this long would be (<= 0)."""
        value = np.interp(pause_ms, self.survival_ms, self.survival)
        return float(np.log(max(float(value), 1e-6)))

    def to_json(self) -> dict[str, Any]:
        return {
            "feature_names": list(self.feature_names),
            "mean": _rounded(self.mean), "scale": _rounded(self.scale),
            "weights": _rounded(self.weights), "bias": round(self.bias, 6),
            "survival_ms": _rounded(self.survival_ms), "survival": _rounded(self.survival),
            "text_threshold": self.text_threshold,
            "end_threshold": self.end_threshold,
            "speculative_threshold": self.speculative_threshold,
            "max_pause_ms": self.max_pause_ms, "info": self.info,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EndpointModel:
        names = tuple(data["feature_names"])
        if names != FEATURE_NAMES:
            raise ModelNotReadyError(
                "the end-of-turn model was fitted on other features; "
                "rebuild it with: python -m edge.endpointing.train")
        return cls(feature_names=names, mean=np.asarray(data["mean"], dtype=np.float64),
                   scale=np.asarray(data["scale"], dtype=np.float64),
                   weights=np.asarray(data["weights"], dtype=np.float64),
                   bias=float(data["bias"]),
                   survival_ms=np.asarray(data["survival_ms"], dtype=np.float64),
                   survival=np.asarray(data["survival"], dtype=np.float64),
                   text_threshold=float(data["text_threshold"]),
                   end_threshold=float(data["end_threshold"]),
                   speculative_threshold=float(data["speculative_threshold"]),
                   max_pause_ms=float(data["max_pause_ms"]), info=dict(data.get("info", {})))

    @classmethod
    def load(cls, path: Path = MODEL_PATH) -> EndpointModel:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls.from_json(data)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelNotReadyError(
                f"end-of-turn model {path} is missing or unreadable; "
                "build it with: python -m edge.endpointing.train") from exc


@cache
def default_model() -> EndpointModel:
    """The model shipped beside this module (read once)."""
    return EndpointModel.load()


class EndOfTurnDetector:
    """P(the user's turn is complete | pause so far, partial transcript, prosody)."""

    def __init__(self, model: EndpointModel | None = None) -> None:
        self.model = model or default_model()

    def probability(self, pause_ms: float, partial_text: str | None,
                    prosody: Any = None) -> float:
        """``partial_text`` is the transcript of the turn up to this pause (whisper's casing
        and punctuation are fine); ``prosody`` an ``edge.prosody.ProsodyFeatures`` of the
        turn so far, the wire ``Prosody``, or ``None``."""
        return self.with_pause(self.text_logit(partial_text, prosody), pause_ms)

    def text_logit(self, partial_text: str | None, prosody: Any = None) -> float:
        """Log-odds of the end from the words and the voice alone (the pause not counted)."""
        return self.model.logit(feature_vector(partial_text, prosody))

    def with_pause(self, text_logit: float, pause_ms: float) -> float:
        """The probability once ``pause_ms`` of silence is counted too."""
        pause = 0.0 if math.isnan(pause_ms) else min(max(float(pause_ms), 0.0), 1e9)
        return sigmoid(text_logit - self.model.log_survival(pause))


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """The operating point; ``None`` fields take the values fitted with the model."""

    text_threshold: float | None = None
    end_threshold: float | None = None
    speculative_threshold: float | None = None
    max_pause_ms: float | None = None


class EndOfTurnPolicy:
    """Turns the detector's probability into speculate / commit decisions (stateless).

    Implements ``edge.turns.EndOfTurnPolicy``: call :meth:`decide` every ~50 ms of a pause
    once the partial transcript of the turn up to the pause is known.
    """

    def __init__(self, detector: EndOfTurnDetector | None = None,
                 config: EndpointConfig | None = None) -> None:
        self.detector = detector or EndOfTurnDetector()
        model, cfg = self.detector.model, config or EndpointConfig()
        self.text_threshold = _pick(cfg.text_threshold, model.text_threshold)
        self.end_threshold = _pick(cfg.end_threshold, model.end_threshold)
        self.speculative_threshold = min(
            _pick(cfg.speculative_threshold, model.speculative_threshold), self.end_threshold)
        self.max_pause_ms = _pick(cfg.max_pause_ms, model.max_pause_ms)

    def decide(self, pause_ms: float, text: str | None, prosody: Any = None) -> TurnDecision:
        """The decision after ``pause_ms`` of silence (measured from the end of speech)."""
        z = self.detector.text_logit(text, prosody)
        p = self.detector.with_pause(z, pause_ms)
        commit = (sigmoid(z) >= self.text_threshold or p >= self.end_threshold
                  or pause_ms >= self.max_pause_ms)
        return TurnDecision(probability=p, speculate=commit or p >= self.speculative_threshold,
                            commit=commit)


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


def _pick(value: float | None, default: float) -> float:
    return float(default if value is None else value)


def _rounded(a: npt.NDArray[np.float64]) -> list[float]:
    return [round(float(v), 6) for v in a]
