"""A real (small) model's reference profile and real simulated traffic, for the drift tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from core.data.simulate import generate_tickets
from core.release.manifest import ReferenceProfile
from core.settings import Settings
from core.training.families import build_pipeline, default_params
from core.training.refit import reference_profile, score

TEXT = ["short_description", "close_notes"]
SETTINGS = Settings()


@dataclass
class Reference:
    model: Any
    profile: ReferenceProfile
    test_f1: float
    pool: pd.DataFrame


def window_of(model: Any, tickets: pd.DataFrame, labelled_share: float = 0.0) -> pd.DataFrame:
    probabilities = np.asarray(model.predict_proba(tickets[TEXT]))
    window = tickets[TEXT].copy()
    window.insert(0, "request_id", [f"req-{i}" for i in range(len(window))])
    window["prediction"] = np.asarray(model.classes_)[probabilities.argmax(axis=1)]
    window["confidence"] = probabilities.max(axis=1)
    classes = np.asarray(model.classes_)
    window["top_probabilities"] = [  # the top 3, as the prediction log keeps them
        json.dumps({str(classes[j]): float(row[j]) for j in np.argsort(-row)[:3]})
        for row in probabilities
    ]
    labelled = np.arange(len(window)) < labelled_share * len(window)
    window["true_label"] = pd.Series(tickets["label"].where(labelled, None), dtype=object).values
    return window


@pytest.fixture(scope="module")
def reference() -> Reference:
    data = generate_tickets(2500, "baseline", seed=1)
    train, test = train_test_split(data, test_size=0.3, random_state=0, stratify=data["label"])
    model = build_pipeline("linear_svm", default_params("linear_svm"), "spanish", 0)
    model.fit(train[TEXT], train["label"].to_numpy(dtype=object))
    evaluation, probabilities = score(model, test)
    profile = reference_profile(model, train, test, probabilities, SETTINGS)
    pool = window_of(model, generate_tickets(4000, "baseline", seed=99), labelled_share=1.0)
    return Reference(model, profile, evaluation.macro_f1, pool)
