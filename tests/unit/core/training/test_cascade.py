from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.data.tables import LABEL, TEXT
from core.explain.attribution import explain
from core.models import Cascade, lean_predict_proba
from core.release.bundle import deserialize_model, serialize_model
from core.training.cascade import choose_gate
from core.training.families import build_model, default_params
from core.training.leaderboard import select_winner
from core.training.tuning import StudyResult, TrialPredictions, encode_probabilities


def _confident(truth: np.ndarray, classes: int, right: np.ndarray, sure: np.ndarray) -> np.ndarray:
    """One repeat of probabilities: ``sure`` rows get 0.9 on their class, the others 0.45;
    the class is the true one where ``right``, the next one otherwise."""
    predicted = np.where(right, truth, (truth + 1) % classes)
    top = np.where(sure, 0.9, 0.45)
    out = np.tile(((1 - top) / (classes - 1))[:, None], (1, classes))
    out[np.arange(len(truth)), predicted] = top
    return out[None]


def test_the_gate_answers_what_it_is_sure_of_and_the_threshold_keeps_the_models_score() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, 400)
    sure = rng.random(400) < 0.6
    gate = _confident(truth, 4, right=sure | (rng.random(400) < 0.3), sure=sure)
    model = _confident(truth, 4, right=rng.random(400) < 0.85, sure=np.ones(400, bool))
    choice = choose_gate(truth, model, gate)
    assert choice is not None
    assert choice.threshold <= 0.9 and choice.model_share == pytest.approx(1 - sure.mean())
    assert choice.cascade_macro_f1 >= choice.model_macro_f1 - 0.002
    # a gate that is sure and wrong is never put in front
    wrong = _confident(truth, 4, right=np.zeros(400, bool), sure=np.ones(400, bool))
    assert choose_gate(truth, model, wrong) is None


@pytest.fixture(scope="module")
def cascade(demo_frame: pd.DataFrame) -> Cascade:
    gate = {
        "family": "linear_svm",
        "params": {**default_params("linear_svm"), "char_ngrams": "none"},
        "threshold": 0.6,
    }
    params = {**default_params("logistic_regression"), "embedding_weight": 1.0}
    model = build_model("logistic_regression", params, "spanish", 0, gate=gate)
    return model.fit(demo_frame[TEXT], demo_frame[LABEL].to_numpy(dtype=object))


def test_a_cascade_takes_the_gates_answer_when_sure_and_the_models_otherwise(
    cascade: Cascade, demo_frame: pd.DataFrame
) -> None:
    rows = demo_frame[TEXT].head(60)
    gate = cascade.gate_.predict_proba(rows)
    model = cascade.model_.predict_proba(rows)
    sure = gate.max(axis=1) >= 0.6
    assert 0 < sure.sum() < len(rows), "the demo has easy and hard tickets"
    expected = np.where(sure[:, None], gate, model)
    assert np.allclose(cascade.predict_proba(rows), expected)
    assert np.allclose(lean_predict_proba(cascade, rows.to_numpy(dtype=object)), expected)
    loaded = deserialize_model(serialize_model(cascade))
    assert np.allclose(loaded.predict_proba(rows), expected)
    first_sure = int(np.flatnonzero(sure)[0])
    first_unsure = int(np.flatnonzero(~sure)[0])
    for index, who in ((first_sure, "gate"), (first_unsure, "behind the gate")):
        short, notes = rows.iloc[index]
        result = explain(cascade, short, notes)
        assert who in result.method
        assert result.probability == pytest.approx(expected[index].max(), abs=1e-6)


def _study(family: str, params: dict[str, object], probabilities: np.ndarray) -> StudyResult:
    trial = TrialPredictions(
        params,
        0.8,
        0.02,
        probabilities.argmax(axis=2).tolist(),
        encode_probabilities(probabilities),
    )
    return StudyResult(
        family, params, 0.8, 1, 0, 1.0, default_params=params, trial_predictions=[trial]
    )


def test_a_winner_with_the_encoder_is_put_behind_the_best_tfidf_trial() -> None:
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 4, 400)
    sure = rng.random(400) < 0.6
    with_encoder = {**default_params("linear_svm"), "encoder_weight": 2.0}
    tfidf = {**default_params("logistic_regression"), "encoder_weight": 0.0}
    results = [
        _study(
            "linear_svm",
            with_encoder,
            _confident(truth, 4, rng.random(400) < 0.9, np.ones(400, bool)),
        ),
        _study("logistic_regression", tfidf, _confident(truth, 4, sure, sure)),
    ]
    winner = select_winner(results, one_standard_error=False, truth=truth, cascade=True)
    assert winner is not None and winner.family == "linear_svm" and winner.gate is not None
    assert winner.gate["family"] == "logistic_regression" and winner.gate["params"] == tfidf
    assert "TF-IDF gate" in winner.selection
    plain = select_winner(results, one_standard_error=False, truth=truth)
    assert plain is not None and plain.gate is None
