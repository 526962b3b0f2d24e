"""Ensemble selection: a weighted vote of the search's trials instead of a bet on one of them.

On small tables the choice between families is noise (one standard error of CV macro-F1 is 3-5
points at 150 rows while the families are ranked on thousandths), so the final model is built
from every completed trial's out-of-fold probabilities, as auto-sklearn and AutoGluon do:
greedy forward selection with replacement (Caruana, Niculescu-Mizil, Crew and Ksikes, ICML
2004). Starting from nothing, each of ``ITERATIONS`` steps adds the trial (possibly one already
in) whose addition makes the averaged probabilities best; a trial's weight is the share of steps
that chose it. At most ``MAX_MEMBERS`` distinct trials are kept, which bounds the cost of
serving the ensemble (each member is a pipeline of its own; the encoder's vectors are shared).

"Best" is the balanced log-loss: the log-loss with every class weighing the same, whatever its
rows. Measured on subsamples of real tickets (6 seeds each; the mean test macro-F1 of a pool of
linear SVMs, logistic regressions and extra trees, with and without the encoder): the plain
log-loss favours the majority class and lost 4.7 points to the linear default on IT tickets at
300 rows; macro-F1 itself is too coarse to climb on (it overfitted: -0.9 points on Spanish help
desk tickets at 150 rows); the balanced log-loss was +1.2 and +1.1 points over the linear
default on the Spanish tickets (150, 300 rows) and +1.3 and +0.1 on IT tickets (300, 600 rows),
and level on Banking77 (benchmarks/small_tables.py has the product's own comparison).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.training.selection import macro_f1_by_candidate

#: Greedy steps: a member's weight is a multiple of 1/ITERATIONS.
ITERATIONS = 25
#: Distinct members at most: each is a pipeline to fit and to serve.
MAX_MEMBERS = 5
#: Probabilities are clipped here before the logarithm: a member certain of a wrong class must
#: not make every ensemble holding it infinitely bad.
FLOOR = 1e-6


@dataclass(frozen=True)
class EnsembleCandidate:
    """A configuration the search completed: its family, parameters, CV macro-F1 and
    out-of-fold probabilities (repeats of the folds, rows, classes)."""

    family: str
    params: dict[str, object]
    cv_macro_f1: float
    probabilities: np.ndarray
    #: A linear family's default configuration (with or without the encoder): what the
    #: ensemble is judged against.
    baseline: bool = False


@dataclass(frozen=True)
class EnsembleChoice:
    """The chosen members as (candidate index, weight), heaviest first, and how the weighted
    average of their out-of-fold probabilities scores (optimistic: chosen on the same rows)."""

    members: tuple[tuple[int, float], ...]
    balanced_log_loss: float
    macro_f1: float


def class_weights(
    truth: np.ndarray, classes: int, row_weights: np.ndarray | None = None
) -> np.ndarray:
    """Each row's weight in the balanced log-loss: 1 / (its class's weighted row count)."""
    weights = np.ones(len(truth)) if row_weights is None else row_weights
    counts = np.bincount(truth, weights=weights, minlength=classes)
    per_class = np.divide(1.0, counts, out=np.zeros(classes), where=counts > 0)
    return weights * per_class[truth]


def greedy_counts(
    true_class: np.ndarray,
    weights: np.ndarray,
    iterations: int = ITERATIONS,
    max_members: int = MAX_MEMBERS,
) -> Counter[int]:
    """Caruana's forward selection with replacement on the balanced log-loss.

    ``true_class`` holds each candidate's probability of every row's true class (candidates,
    repeats, rows): the loss needs nothing else, so a step costs one pass over it. Rows of
    weight 0 (left out of a bootstrap round) do not count. Ties go to the earlier candidate."""
    total = np.zeros(true_class.shape[1:])
    counts: Counter[int] = Counter()
    norm = float(weights.sum()) * true_class.shape[1]
    for step in range(iterations):
        allowed = np.ones(true_class.shape[0], dtype=bool)
        if len(counts) >= max_members:
            allowed[:] = False
            allowed[list(counts)] = True
        mixed = (total[None] + true_class) / (step + 1)
        losses = -(np.log(np.maximum(mixed, FLOOR)) * weights).sum(axis=(1, 2)) / max(norm, 1e-12)
        losses[~allowed] = np.inf
        best = int(np.argmin(losses))
        counts[best] += 1
        total += true_class[best]
    return counts


def combine(candidates: Sequence[EnsembleCandidate], counts: Counter[int]) -> np.ndarray:
    """The weighted average of the chosen candidates' probabilities."""
    steps = sum(counts.values())
    return sum(candidates[i].probabilities * (n / steps) for i, n in counts.items())  # type: ignore[return-value]


def true_class_probabilities(
    candidates: Sequence[EnsembleCandidate], truth: np.ndarray
) -> np.ndarray:
    rows = np.arange(len(truth))
    return np.stack([c.probabilities[:, rows, truth] for c in candidates]).astype(np.float64)


def select_ensemble(
    candidates: Sequence[EnsembleCandidate],
    truth: np.ndarray,
    iterations: int = ITERATIONS,
    max_members: int = MAX_MEMBERS,
) -> EnsembleChoice:
    """The ensemble of ``candidates`` that forward selection builds on all rows."""
    if not candidates:
        raise ValueError("no candidate to build an ensemble from")
    classes = candidates[0].probabilities.shape[2]
    weights = class_weights(truth, classes)
    counts = greedy_counts(
        true_class_probabilities(candidates, truth), weights, iterations, max_members
    )
    mixed = combine(candidates, counts)
    steps = sum(counts.values())
    members = tuple(
        sorted(((i, n / steps) for i, n in counts.items()), key=lambda item: (-item[1], item[0]))
    )
    true_mixed = mixed[:, np.arange(len(truth)), truth]
    loss = float(
        -(np.log(np.maximum(true_mixed, FLOOR)) * weights).sum() / (weights.sum() * len(mixed))
    )
    predictions = mixed.argmax(axis=2)
    f1 = macro_f1_by_candidate(truth, predictions, np.ones(len(truth)), classes)
    return EnsembleChoice(members, loss, float(np.mean(f1)))


@dataclass(frozen=True)
class EnsembleCheck:
    """Bootstrap bias-corrected comparison of the ensemble procedure with the baseline (the
    better of the linear defaults, with and without the encoder): each procedure chooses on the
    drawn rows and is scored on the rows left out (core/training/selection.py explains why)."""

    ensemble_macro_f1: float
    baseline_macro_f1: float
    gain: float
    gain_sd: float
    ensemble_wins: float
    rounds: int

    @property
    def prefer_ensemble(self) -> bool:
        """Kept when it beats the baseline on the left-out rows on average. The baseline is
        among the ensemble's candidates, so an ensemble no better than it wins about half the
        rounds and loses a little on average (it pays for its choices): the average decides."""
        return self.gain > 0


def bias_corrected_check(
    candidates: Sequence[EnsembleCandidate],
    truth: np.ndarray,
    seed: int,
    rounds: int = 200,
    iterations: int = ITERATIONS,
    max_members: int = MAX_MEMBERS,
) -> EnsembleCheck:
    """Round by round on the same bootstrap draws: forward selection on the drawn rows against
    the baseline's pick (the highest macro-F1 on the drawn rows), both scored on the rows left
    out; repeats of the folds are averaged."""
    baseline = [i for i, c in enumerate(candidates) if c.baseline]
    if not baseline:
        raise ValueError("no baseline candidate")
    classes = candidates[0].probabilities.shape[2]
    true_class = true_class_probabilities(candidates, truth)
    base_predictions = np.stack([candidates[i].probabilities.argmax(axis=2) for i in baseline])
    rng = np.random.default_rng(seed)
    n_rows, repeats = len(truth), true_class.shape[1]
    ensemble_scores, baseline_scores = [], []
    for _ in range(rounds):
        drawn = np.bincount(rng.integers(0, n_rows, n_rows), minlength=n_rows).astype(float)
        left_out = (drawn == 0).astype(float)
        if left_out.sum() == 0:
            continue
        counts = greedy_counts(
            true_class, class_weights(truth, classes, drawn), iterations, max_members
        )
        mixed = combine(candidates, counts).argmax(axis=2)
        ensemble_round, baseline_round = [], []
        for repeat in range(repeats):
            layer = base_predictions[:, repeat, :]
            inside = macro_f1_by_candidate(truth, layer, drawn, classes)
            pick = int(np.argmax(inside))
            outside = macro_f1_by_candidate(
                truth, np.vstack([layer[pick], mixed[repeat]]), left_out, classes
            )
            baseline_round.append(outside[0])
            ensemble_round.append(outside[1])
        ensemble_scores.append(float(np.mean(ensemble_round)))
        baseline_scores.append(float(np.mean(baseline_round)))
    ensemble, base = np.asarray(ensemble_scores), np.asarray(baseline_scores)
    gains = ensemble - base
    return EnsembleCheck(
        ensemble_macro_f1=float(ensemble.mean()),
        baseline_macro_f1=float(base.mean()),
        gain=float(gains.mean()),
        gain_sd=float(gains.std(ddof=1)) if len(gains) > 1 else float("nan"),
        ensemble_wins=float((gains > 0).mean()),
        rounds=len(gains),
    )
