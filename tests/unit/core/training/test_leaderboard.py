from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from sklearn.metrics import f1_score

from core.training.leaderboard import leaderboard, leaderboard_rows, markdown_table, select_winner
from core.training.tuning import StudyResult, TrialPredictions


def test_leaderboard_ranks_and_keeps_failures_last() -> None:
    results = [
        StudyResult("a", {}, 0.7, 3, 0, 1.0),
        StudyResult("b", {}, math.nan, 0, 0, 2.0, error="boom"),
        StudyResult("c", {}, 0.8, 2, 1, 1.5),
    ]
    assert [r.family for r in leaderboard(results)] == ["c", "a"]
    rows = leaderboard_rows(results)
    assert [r["family"] for r in rows] == ["c", "a", "b"]
    assert rows[2]["error"] == "boom" and rows[2]["cv_macro_f1"] is None
    table = markdown_table(rows)
    assert table.splitlines()[0].startswith("| family | cv_macro_f1") and "boom" in table


def _result(family: str, score: float, error: float, default: float) -> StudyResult:
    return StudyResult(
        family,
        {"tuned": True},
        score,
        12,
        0,
        1.0,
        cv_std_error=error,
        cv_folds=10,
        default_params={"tuned": False},
        default_cv_macro_f1=default,
        default_cv_std_error=error,
    )


def test_the_one_standard_error_rule_prefers_linear_defaults_within_noise() -> None:
    results = [
        _result("extra_trees", 0.70, 0.03, 0.66),
        _result("linear_svm", 0.69, 0.03, 0.68),
        _result("logistic_regression", 0.66, 0.03, 0.62),
    ]
    chosen = select_winner(results, one_standard_error=True)
    assert chosen is not None
    assert (chosen.family, chosen.best_params, chosen.cv_macro_f1) == (
        "linear_svm",
        {"tuned": False},
        0.68,
    )
    assert "one-standard-error rule" in chosen.selection and "extra_trees" in chosen.selection
    # beyond the noise the best wins
    results[0] = _result("extra_trees", 0.80, 0.01, 0.75)
    chosen = select_winner(results, one_standard_error=True)
    assert chosen is not None and chosen.family == "extra_trees"
    assert chosen.best_params == {"tuned": True} and "nothing simpler" in chosen.selection
    # a tuned linear model within noise beats a tree's default
    results = [_result("extra_trees", 0.70, 0.03, 0.69), _result("linear_svm", 0.68, 0.03, 0.60)]
    chosen = select_winner(results, one_standard_error=True)
    assert chosen is not None and (chosen.family, chosen.best_params) == (
        "linear_svm",
        {"tuned": True},
    )
    # large tables: the highest mean
    chosen = select_winner(results, one_standard_error=False)
    assert chosen is not None and chosen.family == "extra_trees"
    assert select_winner([], one_standard_error=True) is None


def _trials(
    rng: np.random.Generator, truth: np.ndarray, accuracies: list[float], classes: int
) -> list[TrialPredictions]:
    """Trials whose out-of-fold predictions are right with the given probabilities (two repeats),
    scored by their macro-F1 as a study would."""
    trials: list[TrialPredictions] = []
    for accuracy in accuracies:
        layers = []
        for _ in range(2):
            wrong = (truth + rng.integers(1, classes, truth.size)) % classes
            layers.append(np.where(rng.random(truth.size) < accuracy, truth, wrong))
        value = float(np.mean([f1_score(truth, layer, average="macro") for layer in layers]))
        trials.append(
            TrialPredictions({"i": len(trials)}, value, 0.02, [x.tolist() for x in layers])
        )
    return trials


def _study(family: str, trials: list[TrialPredictions]) -> StudyResult:
    best = max(trials, key=lambda t: t.cv_macro_f1)
    return StudyResult(
        family,
        best.params,
        best.cv_macro_f1,
        len(trials),
        0,
        1.0,
        cv_std_error=0.02,
        cv_folds=10,
        default_params=trials[0].params,
        default_cv_macro_f1=trials[0].cv_macro_f1,
        trial_predictions=trials,
    )


def test_bias_corrected_selection_keeps_the_default_when_the_search_won_by_chance() -> None:
    """Eighty configurations no better than the default: the best of them looks better on CV
    (the winner's curse), yet on rows it did not choose on it is not, so the default stays."""
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 6, 150)
    results = [
        _study("linear_svm", _trials(rng, truth, [0.7] * 12, 6)),
        *(_study(f, _trials(rng, truth, [0.7] * 12, 6)) for f in ("extra_trees", "xgboost")),
        *(_study(f, _trials(rng, truth, [0.7] * 12, 6)) for f in ("lightgbm", "random_forest")),
    ]
    searched_best = max(t.cv_macro_f1 for r in results for t in r.trial_predictions)
    default = results[0].trial_predictions[0]
    assert searched_best > default.cv_macro_f1 + 0.02  # what CV alone would act on
    chosen = select_winner(results, one_standard_error=True, truth=truth, seed=1)
    assert chosen is not None
    assert (chosen.family, chosen.best_params) == ("linear_svm", default.params)
    assert "the linear default is kept" in chosen.selection and "bias-corrected" in chosen.selection


def test_bias_corrected_selection_takes_a_configuration_that_is_really_better() -> None:
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 6, 150)
    results = [
        _study("linear_svm", _trials(rng, truth, [0.7] * 6, 6)),
        _study("extra_trees", _trials(rng, truth, [0.7] * 5 + [0.85], 6)),
    ]
    chosen = select_winner(results, one_standard_error=True, truth=truth, seed=1)
    assert chosen is not None and chosen.family == "extra_trees"
    assert chosen.best_params == {"i": 5} and "the search's choice" in chosen.selection
    # without out-of-fold predictions (a study cached before they existed): the 1-SE rule
    results[1] = replace(results[1], trial_predictions=[])
    fallback = select_winner(results, one_standard_error=True, truth=truth, seed=1)
    assert fallback is not None and "bias-corrected" not in fallback.selection
