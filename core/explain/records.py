"""What an explanation is, as it crosses into serving and MLflow: per class, each word's weight,
what is not a word, the intercept and the score they add up to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class WordWeight:
    word: str
    field: str
    start: int
    end: int
    weight: float


@dataclass(frozen=True)
class ClassExplanation:
    label: str
    probability: float
    #: The score the contributions add up to (None for occlusion, which is not additive).
    score: float | None
    intercept: float | None
    top_terms: list[WordWeight]
    #: Every word's weight, in ticket order (the parts of the score that are words).
    words: list[WordWeight]
    #: Contributions not placed on a word: "unplaced" n-grams and dense blocks by name.
    other: dict[str, float]
    #: Share of the total absolute contribution that ``top_terms`` carry.
    explained_share: float


@dataclass(frozen=True)
class Explanation:
    method: str
    score_kind: str
    prediction: str
    probability: float
    classes: list[ClassExplanation] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """As JSON-ready dicts, built directly (``dataclasses.asdict`` deep-copies every word
        and cost a third of an explanation's time)."""
        return {
            "method": self.method,
            "score_kind": self.score_kind,
            "prediction": self.prediction,
            "probability": self.probability,
            "classes": [
                {
                    "label": c.label,
                    "probability": c.probability,
                    "score": c.score,
                    "intercept": c.intercept,
                    "top_terms": [vars(w) for w in c.top_terms],
                    "words": [vars(w) for w in c.words],
                    "other": c.other,
                    "explained_share": c.explained_share,
                }
                for c in self.classes
            ],
        }
