from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.bundle import deserialize_model, serialize_model
from core.models import (
    REGISTRY,
    build_pipeline,
    default_params,
    lean_predict_proba,
    split_params,
    starting_points,
)
from core.settings import FAMILIES

TEXT = ["short_description", "close_notes"]


def _small(params: dict) -> dict:
    small = dict(params)
    if "k" in small:
        small["k"] = 150
    if "n_estimators" in small:
        small["n_estimators"] = 20
    return small


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_trains_predicts_and_round_trips_through_skops(
    family: str, demo_frame: pd.DataFrame
) -> None:
    train, test = demo_frame.iloc[:450], demo_frame.iloc[450:]
    model = build_pipeline(family, _small(default_params(family)), "spanish", seed=0)
    model.fit(train[TEXT], train["label"].to_numpy(dtype=object))
    probabilities = model.predict_proba(test[TEXT])
    assert probabilities.shape == (len(test), train["label"].nunique())
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    predicted = model.predict(test[TEXT])
    assert set(predicted) <= set(train["label"])
    assert (predicted == test["label"].to_numpy()).mean() > 0.5
    restored = deserialize_model(serialize_model(model))
    assert np.allclose(restored.predict_proba(test[TEXT]), probabilities)
    rows = test[TEXT].to_numpy(dtype=object)
    np.testing.assert_allclose(lean_predict_proba(restored, rows), probabilities, atol=1e-6)


@pytest.mark.parametrize("family", [f for f in FAMILIES if REGISTRY[f].embeddings])
def test_linear_families_try_the_embedding_block_and_save_it_by_reference(
    family: str, demo_frame: pd.DataFrame
) -> None:
    first, second, *_ = starting_points(family)
    assert (first["embedding_weight"], second["embedding_weight"]) == (0.0, 1.0)
    model = build_pipeline(family, second, "spanish", seed=0)
    assert [name for name, _ in model.named_steps["features"].transformer_list][-1] == "embedding"
    train, test = demo_frame.iloc[:450], demo_frame.iloc[450:]
    model.fit(train[TEXT], train["label"].to_numpy(dtype=object))
    probabilities = model.predict_proba(test[TEXT])
    saved = serialize_model(model)
    assert len(saved) < 5_000_000, "the 47 MB table is read from the package, not saved"
    restored = deserialize_model(saved)
    rows = test[TEXT].to_numpy(dtype=object)
    np.testing.assert_allclose(lean_predict_proba(restored, rows), probabilities, atol=1e-6)


def test_tree_families_never_get_the_signed_embedding_block() -> None:
    """They select features with chi-squared, which refuses negative values."""
    for family in FAMILIES:
        if not REGISTRY[family].embeddings:
            assert all(p.get("embedding_weight", 0.0) == 0.0 for p in starting_points(family))


def test_svm_probabilities_agree_with_its_decisions(demo_frame: pd.DataFrame) -> None:
    model = build_pipeline("linear_svm", default_params("linear_svm"), "spanish", seed=0)
    model.fit(demo_frame[TEXT], demo_frame["label"].to_numpy(dtype=object))
    probabilities = model.predict_proba(demo_frame[TEXT])
    assert (model.classes_[probabilities.argmax(axis=1)] == model.predict(demo_frame[TEXT])).all()
    assert 0 < model[-1].temperature_ < 20


def test_default_params_fit_every_search_space() -> None:
    for family in FAMILIES:
        text, features, head = split_params(default_params(family))
        assert text and features and head
        assert REGISTRY[family].name == family


def test_stacked_one_vs_rest_matches_one_vs_rest(demo_frame) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    from core.models import StackedOneVsRest

    texts = demo_frame["short_description"].to_numpy(dtype=object)
    X = TfidfVectorizer().fit_transform(texts)
    binary = LogisticRegression(solver="liblinear", C=5.0)
    for labels in (demo_frame["label"].to_numpy(dtype=object), texts.astype(str) == texts[0]):
        reference = OneVsRestClassifier(binary).fit(X, labels)
        stacked = StackedOneVsRest(binary).fit(X, labels)
        assert np.allclose(stacked.predict_proba(X), reference.predict_proba(X))
        assert (stacked.predict(X) == reference.predict(X)).all()
        assert np.allclose(stacked.decision_function(X), reference.decision_function(X))
        assert not hasattr(stacked, "estimators_"), "per-class copies of the weights are dropped"
