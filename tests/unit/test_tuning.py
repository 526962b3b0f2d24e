from __future__ import annotations

import math

import optuna
import pandas as pd

from core.tuning import (
    StudyResult,
    TuningData,
    describe_trial,
    leaderboard,
    leaderboard_rows,
    markdown_table,
    run_study,
)


def test_a_study_tunes_within_its_trial_budget_and_reports_progress(
    demo_frame: pd.DataFrame,
) -> None:
    data = TuningData(demo_frame, "spanish", cv_folds=3, seed=1)
    seen: list[int] = []
    result = run_study(
        "logistic_regression",
        data,
        trials=3,
        timeout_s=120,
        on_trial=lambda f, t: seen.append(t.number),
    )
    assert result.ok and result.trials + result.pruned == 3
    assert seen == [0, 1, 2]
    assert 0.5 < result.cv_macro_f1 <= 1.0
    assert "C" in result.best_params and "text_level" in result.best_params
    assert "embedding_weight" in result.best_params


def test_a_linear_study_compares_tfidf_alone_with_the_embedding_block(
    demo_frame: pd.DataFrame,
) -> None:
    weights: list[float] = []
    result = run_study(
        "linear_svm",
        TuningData(demo_frame, "spanish", 3, 1),
        trials=2,
        timeout_s=120,
        on_trial=lambda _family, trial: weights.append(trial.params["embedding_weight"]),
    )
    assert result.ok and result.trials == 2
    assert weights == [0.0, 1.0]
    tree = run_study("random_forest", TuningData(demo_frame, "spanish", 3, 1), 1, 120)
    assert tree.ok and "embedding_weight" not in tree.best_params


def test_same_seed_same_study(demo_frame: pd.DataFrame) -> None:
    first = run_study(
        "linear_svm", TuningData(demo_frame, "spanish", 3, 5), trials=3, timeout_s=120
    )
    second = run_study(
        "linear_svm", TuningData(demo_frame, "spanish", 3, 5), trials=3, timeout_s=120
    )
    assert first.best_params == second.best_params
    assert first.cv_macro_f1 == second.cv_macro_f1


def test_matrices_are_cached_per_setting(demo_frame: pd.DataFrame) -> None:
    data = TuningData(demo_frame, "spanish", 3, 1)
    params = {"word_ngram_max": 1, "char_ngrams": "none", "min_df": 2}
    first = data.fold_matrices({"text_level": "light"}, params)
    again = data.fold_matrices({"text_level": "light"}, params)
    assert len(data._matrices) == 1  # built once
    assert again[0][0] is not first[0][0]  # but every caller gets its own copy
    assert (again[0][0] != first[0][0]).nnz == 0
    assert first[0][0].has_canonical_format
    assert len(first) == 3
    train_matrix, valid_matrix = first[0]
    assert train_matrix.shape[1] == valid_matrix.shape[1] < 2000
    assert train_matrix.shape[0] + valid_matrix.shape[0] == len(demo_frame)


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


def test_a_pruned_trial_is_not_logged_as_a_score() -> None:
    pruned = optuna.trial.create_trial(
        state=optuna.trial.TrialState.PRUNED, intermediate_values={0: 0.93, 1: 0.91}
    )
    done = optuna.trial.create_trial(value=0.88, intermediate_values={0: 0.9, 1: 0.87, 2: 0.88})
    failed = optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL)
    assert describe_trial(pruned) == "pruned after 2 folds (mean so far 0.9100)"
    assert describe_trial(done) == "0.8800"
    assert describe_trial(failed) == "fail"
