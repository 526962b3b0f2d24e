"""The estimators saved inside bundles (core/models.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.models import StackedOneVsRest
from core.training.families import build_pipeline, default_params

TEXT = ["short_description", "close_notes"]


def test_svm_probabilities_agree_with_its_decisions(demo_frame: pd.DataFrame) -> None:
    model = build_pipeline("linear_svm", default_params("linear_svm"), "spanish", seed=0)
    model.fit(demo_frame[TEXT], demo_frame["label"].to_numpy(dtype=object))
    probabilities = model.predict_proba(demo_frame[TEXT])
    assert (model.classes_[probabilities.argmax(axis=1)] == model.predict(demo_frame[TEXT])).all()
    assert 0 < model[-1].temperature_ < 20


def test_stacked_one_vs_rest_matches_one_vs_rest(demo_frame) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

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
