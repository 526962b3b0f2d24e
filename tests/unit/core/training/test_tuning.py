from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest
from sklearn.metrics import f1_score

import core.encoder as encoder
import core.training.tuning as tuning
from core.encoder import EmbeddingCache
from core.training.studies import describe_trial, run_study
from core.training.tuning import TuningData, decode_probabilities


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


def test_with_the_encoder_every_training_text_is_embedded_once_before_the_studies(
    demo_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(encoder, "CACHE", EmbeddingCache())
    frame = demo_frame.head(150)
    data = TuningData(frame, "spanish", 3, 1, encoder=True)
    assert data.fingerprint() != TuningData(frame, "spanish", 3, 1).fingerprint()
    distinct = len(set(data.documents({"text_level": "light"})))
    assert data.warm_encoder() == distinct
    assert data.warm_encoder() == 0
    before = encoder.COUNTS.embedded
    weights: list[float] = []
    result = run_study(
        "linear_svm",
        data,
        trials=2,
        timeout_s=120,
        on_trial=lambda _family, trial: weights.append(trial.params["encoder_weight"]),
    )
    assert result.ok and weights == [2.0, 0.0]  # the default includes the encoder
    assert encoder.COUNTS.embedded == before  # every fold of the encoder trial found its vectors
    assert TuningData(frame, "spanish", 3, 1).warm_encoder() == 0  # without the profile: nothing


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


def test_a_pruned_trial_is_not_logged_as_a_score() -> None:
    pruned = optuna.trial.create_trial(
        state=optuna.trial.TrialState.PRUNED, intermediate_values={0: 0.93, 1: 0.91}
    )
    done = optuna.trial.create_trial(value=0.88, intermediate_values={0: 0.9, 1: 0.87, 2: 0.88})
    failed = optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL)
    assert describe_trial(pruned) == "pruned after 2 folds (mean so far 0.9100)"
    assert describe_trial(done) == "0.8800"
    assert describe_trial(failed) == "fail"


def test_a_small_table_study_scores_every_fold_and_the_default(demo_frame: pd.DataFrame) -> None:
    small = demo_frame.groupby("label").head(30).reset_index(drop=True)
    data = TuningData(small, "spanish", 3, 1, small_table_rows=2000)
    assert data.plan.small and len(data.folds) == 10
    result = run_study("linear_svm", data, trials=3, timeout_s=120)
    assert result.ok and result.pruned == 0 and result.cv_folds == 10
    assert 0 < result.cv_std_error < 0.2
    assert result.default_params is not None and result.default_params["C"] == 0.5
    assert result.default_cv_macro_f1 <= result.cv_macro_f1


def test_a_small_table_study_keeps_every_trials_out_of_fold_predictions(
    demo_frame: pd.DataFrame,
) -> None:
    small = demo_frame.groupby("label").head(30).reset_index(drop=True)
    data = TuningData(small, "spanish", 3, 1, small_table_rows=2000)
    result = run_study("logistic_regression", data, trials=2, timeout_s=120)
    assert len(result.trial_predictions) == result.trials == 2
    for trial in result.trial_predictions:
        layers = np.asarray(trial.predictions)
        assert layers.shape == (data.plan.repeats, len(small)) and layers.min() >= 0
        overall = np.mean([f1_score(data.codes, layer, average="macro") for layer in layers])
        assert overall == pytest.approx(trial.cv_macro_f1, abs=0.05)  # pooled vs fold means
        # and its out-of-fold probabilities, whose most likely class is the prediction
        probabilities = decode_probabilities(trial.probabilities)
        assert probabilities.shape == (data.plan.repeats, len(small), len(data.classes))
        assert np.allclose(probabilities.sum(axis=2), 1, atol=0.01)
        assert (probabilities.argmax(axis=2) == layers).mean() > 0.99  # float16 ties aside
    large = TuningData(small, "spanish", 3, 1, small_table_rows=0)
    (kept,) = run_study("logistic_regression", large, 1, 120).trial_predictions
    assert kept.predictions == [] and kept.probabilities  # no hard predictions on large tables


def test_out_of_fold_probabilities_are_not_kept_past_their_bound(
    demo_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tuning, "OOF_CELLS", len(demo_frame))
    large = TuningData(demo_frame, "spanish", 3, 1, small_table_rows=0)
    assert run_study("logistic_regression", large, 1, 120).trial_predictions == []
