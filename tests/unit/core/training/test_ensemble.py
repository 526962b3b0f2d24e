from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.data.tables import LABEL, TEXT
from core.explain.attribution import explain, word_sum
from core.explain.global_view import top_terms_per_class
from core.models import WeightedEnsemble, lean_predict_proba
from core.release.bundle import deserialize_model, serialize_model
from core.training.ensemble import (
    EnsembleCandidate,
    bias_corrected_check,
    select_ensemble,
)
from core.training.families import ENSEMBLE, build_model, default_params
from core.training.leaderboard import select_winner
from core.training.tuning import StudyResult, TrialPredictions, encode_probabilities


def _probabilities(
    rng: np.random.Generator, truth: np.ndarray, classes: int, skill: float, repeats: int = 1
) -> np.ndarray:
    """Out-of-fold probabilities that put ``skill`` more mass on the true class than noise."""
    noise = rng.random((repeats, truth.size, classes))
    noise[:, np.arange(truth.size), truth] += skill
    return noise / noise.sum(axis=2, keepdims=True)


def test_forward_selection_keeps_complementary_members_and_their_weights_sum_to_one() -> None:
    """Two models that are each right on half the rows: together they beat either."""
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, 400)
    half = np.arange(400) < 200
    first = _probabilities(rng, truth, 4, 0.2)
    second = _probabilities(rng, truth, 4, 0.2)
    first[0, half] = _probabilities(rng, truth[half], 4, 3.0)[0]
    second[0, ~half] = _probabilities(rng, truth[~half], 4, 3.0)[0]
    weak = _probabilities(rng, truth, 4, 0.1)
    candidates = [
        EnsembleCandidate("a", {"i": 0}, 0.6, first),
        EnsembleCandidate("b", {"i": 1}, 0.6, second),
        EnsembleCandidate("c", {"i": 2}, 0.3, weak),
    ]
    choice = select_ensemble(candidates, truth)
    chosen = dict(choice.members)
    assert set(chosen) == {0, 1} and sum(chosen.values()) == pytest.approx(1.0)
    assert choice.macro_f1 > 0.9


def test_forward_selection_never_keeps_more_members_than_allowed() -> None:
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, 300)
    candidates = [
        EnsembleCandidate("a", {"i": i}, 0.5, _probabilities(rng, truth, 3, 0.5)) for i in range(9)
    ]
    assert len(select_ensemble(candidates, truth, max_members=3).members) <= 3


def test_the_balanced_loss_does_not_sacrifice_a_rare_class() -> None:
    """A model that never predicts the rare class has the better plain log-loss on skewed data;
    the balanced loss prefers the one that finds the rare class."""
    rng = np.random.default_rng(2)
    truth = np.where(rng.random(500) < 0.9, 0, 1)
    majority = np.zeros((1, 500, 2))
    majority[0, :, 0], majority[0, :, 1] = 0.9, 0.1
    finder = _probabilities(rng, truth, 2, 1.0)
    candidates = [
        EnsembleCandidate("majority", {}, 0.47, majority),
        EnsembleCandidate("finder", {}, 0.7, finder),
    ]
    (member, weight), *_ = select_ensemble(candidates, truth).members
    assert member == 1 and weight >= 0.5


def test_the_bias_corrected_check_prefers_a_real_gain_and_refuses_noise() -> None:
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 5, 200)
    baseline = EnsembleCandidate("linear_svm", {}, 0.6, _probabilities(rng, truth, 5, 0.6), True)
    better = [
        EnsembleCandidate("x", {"i": i}, 0.8, _probabilities(rng, truth, 5, 2.0)) for i in range(3)
    ]
    check = bias_corrected_check([baseline, *better], truth, seed=1, rounds=60)
    assert check.prefer_ensemble and check.gain > 0.1
    same = [EnsembleCandidate("x", {"i": i}, 0.6, baseline.probabilities.copy()) for i in range(3)]
    assert not bias_corrected_check([baseline, *same], truth, seed=1, rounds=60).prefer_ensemble


def _study(family: str, trials: list[tuple[dict[str, object], np.ndarray]], truth: np.ndarray):
    kept = [
        TrialPredictions(
            params,
            float(np.mean(p.argmax(axis=2) == truth)),
            0.02,
            p.argmax(axis=2).tolist(),
            encode_probabilities(p),
        )
        for params, p in trials
    ]
    best = max(kept, key=lambda t: t.cv_macro_f1)
    return StudyResult(
        family,
        best.params,
        best.cv_macro_f1,
        len(kept),
        0,
        1.0,
        cv_std_error=0.02,
        cv_folds=5,
        default_params=kept[0].params,
        default_cv_macro_f1=kept[0].cv_macro_f1,
        trial_predictions=kept,
    )


def test_the_winner_is_an_ensemble_of_the_trials_that_complement_each_other() -> None:
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 3, 300)
    half = np.arange(300) < 150
    left, right = _probabilities(rng, truth, 3, 0.1), _probabilities(rng, truth, 3, 0.1)
    left[0, half] = _probabilities(rng, truth[half], 3, 3.0)[0]
    right[0, ~half] = _probabilities(rng, truth[~half], 3, 3.0)[0]
    svm_default = default_params("linear_svm")
    results = [
        _study("linear_svm", [(svm_default, left)], truth),
        _study("extra_trees", [({"k": 1000}, right)], truth),
    ]
    chosen = select_winner(results, one_standard_error=True, truth=truth, seed=0, ensemble=True)
    assert chosen is not None and chosen.family == ENSEMBLE
    families = {m["family"] for m in chosen.best_params["members"]}
    assert families == {"linear_svm", "extra_trees"}
    assert "ensemble of 2" in chosen.selection and "bias-corrected" in chosen.selection
    assert chosen.oof_probabilities  # what the label audit reads
    # off, the single-model rules decide as before
    single = select_winner(results, one_standard_error=True, truth=truth, seed=0)
    assert single is not None and single.family != ENSEMBLE


def test_on_a_small_table_an_ensemble_that_does_not_beat_the_linear_default_is_not_kept() -> None:
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 4, 200)
    default = _probabilities(rng, truth, 4, 1.0)
    results = [
        _study("linear_svm", [(default_params("linear_svm"), default)], truth),
        _study(
            "xgboost", [({"k": i}, _probabilities(rng, truth, 4, 0.05)) for i in range(4)], truth
        ),
    ]
    chosen = select_winner(results, one_standard_error=True, truth=truth, seed=0, ensemble=True)
    assert chosen is not None and chosen.family == "linear_svm"
    assert chosen.best_params == default_params("linear_svm")


@pytest.fixture(scope="module")
def ensemble(demo_frame: pd.DataFrame) -> WeightedEnsemble:
    params = {
        "members": [
            {"family": "linear_svm", "params": default_params("linear_svm"), "weight": 0.6},
            {
                "family": "logistic_regression",
                "params": {**default_params("logistic_regression"), "embedding_weight": 1.0},
                "weight": 0.4,
            },
        ]
    }
    model = build_model(ENSEMBLE, params, "spanish", 0)
    return model.fit(demo_frame[TEXT], demo_frame[LABEL].to_numpy(dtype=object))


def test_an_ensemble_averages_its_members_and_survives_the_bundle_format(
    ensemble: WeightedEnsemble, demo_frame: pd.DataFrame
) -> None:
    rows = demo_frame[TEXT].head(20)
    members = [m.predict_proba(rows) for _, m in ensemble.members_]
    expected = 0.6 * members[0] + 0.4 * members[1]
    assert np.allclose(ensemble.predict_proba(rows), expected)
    assert np.allclose(lean_predict_proba(ensemble, rows.to_numpy(dtype=object)), expected)
    loaded = deserialize_model(serialize_model(ensemble))
    assert np.allclose(loaded.predict_proba(rows), expected)
    assert list(loaded.predict(rows)) == list(ensemble.predict(rows))


def test_an_ensembles_explanation_adds_up_to_its_members_weighted_scores(
    ensemble: WeightedEnsemble,
) -> None:
    result = explain(ensemble, "no puedo entrar al correo", "restablecí la contraseña")
    assert result.method == "ensemble of linear"
    for part in result.classes:
        assert part.score is not None and word_sum(part) == pytest.approx(part.score, abs=1e-6)
    predicted = ensemble.predict(
        np.asarray([["no puedo entrar al correo", "restablecí la contraseña"]], dtype=object)
    )[0]
    assert result.prediction == predicted
    singles = [
        explain(member, "no puedo entrar al correo", "restablecí la contraseña")
        for _, member in ensemble.members_
    ]
    top = result.classes[0].label
    scores = [float(next(c.score or 0.0 for c in s.classes if c.label == top)) for s in singles]
    assert all(c.score is not None for s in singles for c in s.classes)  # linear: additive
    assert result.classes[0].score == pytest.approx(0.6 * scores[0] + 0.4 * scores[1])
    view = top_terms_per_class(ensemble, k=5)
    assert set(view) == {str(c) for c in ensemble.classes_}
    assert all(len(terms) == 5 for terms in view.values())
