from __future__ import annotations

import math

import numpy as np
import pytest

from core.training.folds import CvPlan, cv_plan, standard_error


def test_small_tables_get_more_folds_repeats_and_no_pruning() -> None:
    labels = np.asarray(["a"] * 150 + ["b"] * 150, dtype=object)
    assert cv_plan(labels, 3, small_table_rows=0) == CvPlan(3)
    assert cv_plan(labels, 3, small_table_rows=300) == CvPlan(3)
    small = cv_plan(labels, 3, small_table_rows=2000)
    assert (small.folds, small.repeats, small.prune, small.small) == (5, 2, False, True)
    medium = cv_plan(np.concatenate([labels, labels]), 3, small_table_rows=2000)
    assert (medium.folds, medium.repeats) == (5, 1)
    rare = np.asarray(["a"] * 100 + ["b"] * 4, dtype=object)
    assert cv_plan(rare, 3, small_table_rows=2000).folds == 4, "no more folds than the rarest class"
    rarer = np.asarray(["a"] * 100 + ["b"] * 2, dtype=object)
    assert cv_plan(rarer, 3, small_table_rows=2000).folds == 3, "at least cv_folds"


def test_the_standard_error_counts_the_rows_folds_share() -> None:
    scores = [0.6, 0.7] * 5
    naive = float(np.std(scores, ddof=1) / np.sqrt(10))
    assert standard_error(scores, folds=5) == pytest.approx(naive * np.sqrt(3.5))
    assert math.isnan(standard_error([0.6], folds=5))
