"""The seven families: search spaces, defaults, and the pipelines they build."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest

from core.models import lean_predict_proba
from core.release.bundle import deserialize_model, serialize_model
from core.settings import FAMILIES
from core.training.families import (
    REGISTRY,
    baseline_points,
    build_pipeline,
    default_params,
    searches_encoder,
    split_params,
    starting_points,
)
from core.training.features import (
    ENCODER_FIRST_WEIGHT,
    ENCODER_WEIGHTS,
    suggest_features,
    uses_encoder,
)

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


def test_default_params_fit_every_search_space() -> None:
    for family in FAMILIES:
        text, features, head = split_params(default_params(family))
        assert text and features and head
        assert REGISTRY[family].name == family


def test_the_registry_holds_the_seven_families_in_settings_order() -> None:
    """Settings validates family names against FAMILIES; the registry must build each of them."""
    assert tuple(REGISTRY) == FAMILIES


@pytest.mark.parametrize("family", [f for f in FAMILIES if REGISTRY[f].encoder])
def test_with_the_encoder_a_linear_default_includes_it_and_is_tried_first(family: str) -> None:
    first, second, third, *rest = starting_points(family, encoder=True)
    assert first["encoder_weight"] == ENCODER_FIRST_WEIGHT and first["embedding_weight"] == 0.0
    assert second == {**first, "encoder_weight": 0.0}
    assert third == {**second, "embedding_weight": 1.0}
    full_text = [p for p in rest if p["text_level"] == "full"]
    assert full_text and all("encoder_weight" not in p for p in full_text)
    names = [n for n, _ in build_pipeline(family, first, "spanish", 0)["features"].transformer_list]
    assert names[-1] == "encoder"
    assert "encoder_weight" not in starting_points(family)[0]
    # what the search is judged against: the defaults with and without the encoder
    assert baseline_points(family, encoder=True) == [first, second]
    assert baseline_points(family) == [starting_points(family)[0]]


def test_only_a_profile_and_family_that_use_the_encoder_pay_for_it() -> None:
    assert searches_encoder(("linear_svm", "lightgbm"), "standard")
    assert searches_encoder(("logistic_regression", "lightgbm"), "standard")
    assert searches_encoder(("linear_svm",), "accurate")  # its old name, in recorded settings
    assert not searches_encoder(("linear_svm",), "fast")
    assert not searches_encoder(("lightgbm", "xgboost"), "standard")


def test_the_linear_families_get_the_encoder_and_the_trees_do_not() -> None:
    """Trees select features with chi-squared (no signed inputs)."""
    assert [f for f in FAMILIES if REGISTRY[f].encoder] == ["logistic_regression", "linear_svm"]
    for family in FAMILIES:
        if not REGISTRY[family].encoder:
            assert all(not uses_encoder(p) for p in starting_points(family, encoder=True))
            assert baseline_points(family, encoder=True) == []


def test_logistic_regression_fits_a_dense_block_with_the_primal_solver() -> None:
    """The dual solver crawls on the encoder's dense columns (measured in families.py)."""
    sparse = build_pipeline(
        "logistic_regression", default_params("logistic_regression"), "spanish", 0
    )
    dense = build_pipeline(
        "logistic_regression",
        {**default_params("logistic_regression"), "encoder_weight": 2.0},
        "spanish",
        0,
    )
    assert sparse.steps[-1][1].estimator.dual is True
    assert dense.steps[-1][1].estimator.dual is False


@pytest.mark.parametrize(
    ("level", "encoder", "asked"),
    [("light", True, True), ("full", True, False), ("light", False, False)],
)
def test_the_encoder_weight_is_searched_only_on_lightly_cleaned_text(
    level: str, encoder: bool, asked: bool
) -> None:
    """Stemmed text is not language the encoder knows, and would cost a second embedding pass."""
    study = optuna.create_study()
    trial = study.ask()
    params = suggest_features(trial, embeddings=True, encoder=encoder, text_level=level)
    assert ("encoder_weight" in params) is asked
    if asked:
        assert params["encoder_weight"] in ENCODER_WEIGHTS
