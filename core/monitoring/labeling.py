"""Which tickets to label next: the logged, unlabelled tickets whose labels would teach the
model most, for a help desk that labels a few dozen a day.

A ticket is worth a label when the model hesitates on it (a small margin between its two likeliest
classes) or when it is unlike what the model was trained on (a large share of its words outside the
training vocabulary). Two guards keep a batch useful:
- per-class quotas: slots go round the predicted classes in turn, so a batch is not all one busy
  class and rare classes get their share;
- no near-duplicates: a ticket whose words overlap an already chosen one's by ``NEAR_DUPLICATE``
  (Jaccard) or more is skipped (ten copies of one outage teach what one does).
The labels come back through the usual feedback paths (``POST /feedback``, the signed webhook),
keyed by the request id each entry carries.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.data.tables import NOTES, SHORT
from core.predlog import PredictionLog
from core.release.manifest import Manifest
from core.text import as_documents, normalize

#: Jaccard overlap of two tickets' word sets at which the second is a near-duplicate.
NEAR_DUPLICATE = 0.7
#: Weight of novelty against uncertainty in the score (both in [0, 1]).
NOVELTY_WEIGHT = 0.2


@dataclass(frozen=True)
class QueueEntry:
    """One ticket to label, with why it was chosen."""

    request_id: str
    created_at: str
    short_description: str
    close_notes: str
    prediction: str
    runner_up: str | None
    confidence: float
    margin: float
    novelty: float
    score: float
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _margin(top_probabilities: str | dict[str, float]) -> tuple[float, str | None]:
    """(top probability minus the runner-up's, the runner-up) from a logged row's top-k."""
    scores = (
        json.loads(top_probabilities) if isinstance(top_probabilities, str) else top_probabilities
    )
    ranked = sorted(scores.items(), key=lambda item: -float(item[1]))
    if len(ranked) < 2:
        return (float(ranked[0][1]) if ranked else 1.0), None
    return float(ranked[0][1]) - float(ranked[1][1]), str(ranked[1][0])


def _reason(margin: float, runner_up: str | None, prediction: str, novelty: float) -> str:
    parts = []
    if runner_up is not None:
        parts.append(f"{prediction} or {runner_up}? margin {margin:.2f}")
    if novelty > 0:
        parts.append(f"{novelty:.0%} of its words unknown to the model")
    return "; ".join(parts) or "uncertain"


def label_queue(
    rows: pd.DataFrame, vocabulary: Collection[str], language: str, n: int
) -> list[QueueEntry]:
    """Up to ``n`` tickets from ``rows`` (unlabelled logged predictions: request_id,
    created_at, the text columns, prediction, confidence, top_probabilities), most informative
    first within each class's turn."""
    if rows.empty or n <= 0:
        return []
    words = [set(normalize(doc, language).split()) for doc in as_documents(rows[[SHORT, NOTES]])]
    known = vocabulary if isinstance(vocabulary, set) else set(vocabulary)
    novelty = np.array([len(w - known) / len(w) if w else 0.0 for w in words])
    margins = [_margin(value) for value in rows["top_probabilities"]]
    margin = np.array([m for m, _ in margins])
    score = (1 - margin) + NOVELTY_WEIGHT * novelty
    by_class: dict[str, list[int]] = defaultdict(list)
    for i in np.argsort(-score, kind="stable"):
        by_class[str(rows["prediction"].iat[int(i)])].append(int(i))
    # Rarest first, so when slots run out it is the busy classes that give way.
    classes = sorted(by_class, key=lambda label: (len(by_class[label]), label))
    chosen: list[int] = []
    chosen_words: list[set[str]] = []
    cursor = dict.fromkeys(classes, 0)
    while len(chosen) < n and classes:
        for label in list(classes):
            if len(chosen) >= n:
                break
            picked = _next_distinct(by_class[label], cursor, label, words, chosen_words)
            if picked is None:
                classes.remove(label)
                continue
            chosen.append(picked)
            chosen_words.append(words[picked])
    return [_entry(rows, i, margins[i], float(novelty[i]), float(score[i])) for i in chosen]


def _next_distinct(
    candidates: list[int],
    cursor: dict[str, int],
    label: str,
    words: list[set[str]],
    chosen_words: list[set[str]],
) -> int | None:
    """The class's next candidate that is not a near-duplicate of one already chosen."""
    while cursor[label] < len(candidates):
        i = candidates[cursor[label]]
        cursor[label] += 1
        if not any(jaccard(words[i], other) >= NEAR_DUPLICATE for other in chosen_words):
            return i
    return None


def jaccard(a: set[str], b: set[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def _entry(
    rows: pd.DataFrame, i: int, margin: tuple[float, str | None], novelty: float, score: float
) -> QueueEntry:
    row = rows.iloc[i]
    prediction = str(row["prediction"])
    return QueueEntry(
        request_id=str(row["request_id"]),
        created_at=str(row["created_at"]),
        short_description=str(row[SHORT]),
        close_notes=str(row[NOTES] or ""),
        prediction=prediction,
        runner_up=margin[1],
        confidence=float(row["confidence"]),
        margin=round(margin[0], 6),
        novelty=round(novelty, 6),
        score=round(score, 6),
        reason=_reason(margin[0], margin[1], prediction, novelty),
    )


#: Unlabelled tickets a queue is chosen from at most (the newest of the window).
POOL_ROWS = 5000


def queue_from_log(
    log: PredictionLog, manifest: Manifest, since: str, n: int, pool: int = POOL_ROWS
) -> tuple[list[QueueEntry], int]:
    """The label queue over the newest ``pool`` unlabelled predictions since ``since``, judged
    against the model's training vocabulary (its reference profile); and the pool's size."""
    rows = log.unlabelled(since, pool)
    profile = manifest.reference_profile
    vocabulary = profile.vocabulary.token_shares if profile is not None else {}
    return label_queue(rows, set(vocabulary), manifest.language, n), len(rows)
