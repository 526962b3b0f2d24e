"""How a study cross-validates: the fold plan for a table (more folds, repeated, and no pruning
on small tables) and the standard error of a mean over folds that share rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Folds and repeats of cross-validation below the small-table threshold.
SMALL_TABLE_FOLDS = 5
SMALL_TABLE_REPEATS = 2
#: Below this many rows the folds are repeated (a fold of under 100 rows is too noisy alone).
REPEAT_BELOW_ROWS = 500


@dataclass(frozen=True)
class CvPlan:
    """How the studies cross-validate: folds, repeats, pruning, and whether the table counts as
    small (which also turns on the one-standard-error rule)."""

    folds: int
    repeats: int = 1
    prune: bool = True
    small: bool = False


def cv_plan(labels: np.ndarray, cv_folds: int, small_table_rows: int = 0) -> CvPlan:
    """``cv_folds`` folds with pruning, or below ``small_table_rows`` rows up to five folds (as
    many as the rarest class allows, at least ``cv_folds``) without pruning, repeated twice
    below ``REPEAT_BELOW_ROWS`` rows."""
    if len(labels) >= small_table_rows:
        return CvPlan(cv_folds)
    rarest = int(pd.Series(labels).value_counts().min())
    folds = max(cv_folds, min(SMALL_TABLE_FOLDS, rarest))
    repeats = SMALL_TABLE_REPEATS if len(labels) < REPEAT_BELOW_ROWS else 1
    return CvPlan(folds, repeats, prune=False, small=True)


def standard_error(scores: list[float], folds: int) -> float:
    """Standard error of a mean over cross-validation scores, corrected for the rows the folds
    share (Nadeau and Bengio: the variance is scaled by 1/k + n_valid/n_train rather than 1/k;
    with 5 folds repeated twice that is 3.5 times the naive variance). The naive figure treats
    ten overlapping folds as ten independent samples and makes every difference look real.
    NaN for fewer than two scores."""
    if len(scores) < 2:
        return float("nan")
    scale = 1 / len(scores) + 1 / (folds - 1)
    return float(np.sqrt(scale * np.var(scores, ddof=1)))
