"""Choosing a model without fooling ourselves: bootstrap bias-corrected cross-validation.

Seven studies of a dozen trials each are scored on the same folds, and the best of ~80 CV means
is inflated by the choice itself (the winner's curse): on 150-row tables the best trial's CV
score is several points above what the same configuration scores on new tickets, while a
family's default configuration, chosen before looking at the data, is not inflated at all.
Comparing the two as measured prefers the tuned configuration too often.

BBC-CV (Tsamardinos, Greasidou and Borboudakis, Machine Learning 107, 2018) corrects for that
without refitting anything: it reuses every trial's out-of-fold predictions. Each bootstrap round
draws the rows with replacement, lets each *procedure* choose its configuration on the drawn
rows, and scores that choice on the rows not drawn. Here two procedures are compared round by
round on the same rows:
- the baseline: the better of the linear families' default configurations;
- the search: the best of every configuration any study tried.
The search is preferred only when it beats the baseline on the left-out rows in at least
``SEARCH_WIN_SHARE`` of the rounds, and on average; then its choice on all rows (the highest CV
mean) is refitted, otherwise the baseline's. A search whose configurations are merely as good as
the default wins about half the rounds: the default, known before the data was seen, is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Bootstrap rounds: the decision rests on the mean gain, whose noise falls as 1/sqrt(rounds).
BBC_ROUNDS = 500
#: Share of rounds the search must win to be preferred to the linear default.
SEARCH_WIN_SHARE = 0.7


@dataclass(frozen=True)
class Candidate:
    """A configuration a study scored, with its out-of-fold predictions (class indices, one row
    per repeat of the folds, -1 where a row was never predicted)."""

    family: str
    params: dict[str, object]
    cv_macro_f1: float
    predictions: np.ndarray
    baseline: bool = False


@dataclass(frozen=True)
class BbcOutcome:
    """What the bootstrap says: each procedure's corrected score, the search's mean gain over
    the baseline and its standard deviation over rounds, and the share of rounds it won."""

    search_macro_f1: float
    baseline_macro_f1: float
    gain: float
    gain_sd: float
    search_wins: float
    rounds: int

    @property
    def prefer_search(self) -> bool:
        return self.gain > 0 and self.search_wins >= SEARCH_WIN_SHARE


def macro_f1_by_candidate(
    truth: np.ndarray, predictions: np.ndarray, weights: np.ndarray, classes: int
) -> np.ndarray:
    """Macro-F1 of each candidate's predictions (candidates x rows) with row weights (bootstrap
    counts): the classes present in the weighted truth or predictions, as scikit-learn averages
    them. Rows predicted -1 (never scored) count as misses."""
    n_candidates = predictions.shape[0]
    valid = predictions >= 0
    index = truth[None, :] * (classes + 1) + np.where(valid, predictions, classes)
    offsets = np.arange(n_candidates)[:, None] * (classes + 1) * classes
    counts = np.bincount(
        (index + offsets).ravel(),
        weights=np.broadcast_to(weights, predictions.shape).ravel(),
        minlength=n_candidates * classes * (classes + 1),
    ).reshape(n_candidates, classes, classes + 1)
    true_positive = np.diagonal(counts[:, :, :classes], axis1=1, axis2=2)
    actual = counts.sum(axis=2)
    predicted = counts[:, :, :classes].sum(axis=1)
    denominator = actual + predicted
    f1 = np.divide(
        2 * true_positive, denominator, out=np.zeros_like(denominator), where=denominator > 0
    )
    present = denominator > 0
    return np.asarray(f1.sum(axis=1) / np.maximum(present.sum(axis=1), 1))


def bootstrap_bias_corrected(
    candidates: Sequence[Candidate], truth: np.ndarray, seed: int, rounds: int = BBC_ROUNDS
) -> BbcOutcome:
    """Round by round on the same rows: each procedure chooses on the drawn rows and is scored
    on the rows left out; repeats of the folds are averaged."""
    baseline = [i for i, c in enumerate(candidates) if c.baseline]
    if not baseline:
        raise ValueError("no baseline candidate")
    predictions = np.stack([c.predictions for c in candidates])  # candidates x repeats x rows
    classes = int(max(truth.max(), predictions.max()) + 1)
    rng = np.random.default_rng(seed)
    n_rows = truth.shape[0]
    search_scores, baseline_scores = [], []
    for _ in range(rounds):
        drawn = np.bincount(rng.integers(0, n_rows, n_rows), minlength=n_rows).astype(float)
        left_out = (drawn == 0).astype(float)
        if left_out.sum() == 0:
            continue
        search_round, baseline_round = [], []
        for repeat in range(predictions.shape[1]):
            layer = predictions[:, repeat, :]
            inside = macro_f1_by_candidate(truth, layer, drawn, classes)
            outside = macro_f1_by_candidate(truth, layer, left_out, classes)
            search_round.append(outside[int(np.argmax(inside))])
            base_pick = baseline[int(np.argmax(inside[baseline]))]
            baseline_round.append(outside[base_pick])
        search_scores.append(float(np.mean(search_round)))
        baseline_scores.append(float(np.mean(baseline_round)))
    search, base = np.asarray(search_scores), np.asarray(baseline_scores)
    gains = search - base
    return BbcOutcome(
        search_macro_f1=float(search.mean()),
        baseline_macro_f1=float(base.mean()),
        gain=float(gains.mean()),
        gain_sd=float(gains.std(ddof=1)) if len(gains) > 1 else float("nan"),
        search_wins=float((gains > 0).mean()),
        rounds=len(gains),
    )
