"""Confident learning on out-of-fold probabilities: which rows are flagged, with which
suggestion, and what a refit without them keeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.data.simulate import generate_tickets
from core.errors import BundleError
from core.io.store import LocalStore
from core.training.families import default_params
from core.training.label_audit import (
    audit_labels,
    out_of_fold_probabilities,
    precision_recall,
    read_audit,
    store_audit,
    suspected_label_errors,
    without_suspects,
)


def test_a_row_the_model_confidently_places_elsewhere_is_flagged_with_that_class() -> None:
    classes = ["a", "b", "c"]
    given = np.array(["a", "a", "a", "b", "b", "c", "c", "a"])
    probabilities = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.7, 0.2, 0.1],
            [0.6, 0.3, 0.1],
            [0.1, 0.8, 0.1],
            [0.2, 0.7, 0.1],
            [0.1, 0.1, 0.8],
            [0.2, 0.1, 0.7],
            [0.05, 0.05, 0.9],  # labelled a, looks like c
        ]
    )
    assert suspected_label_errors(given, probabilities, classes) == [(7, 2)]
    # Unsure rows (no class reaches its threshold) are not flagged, however wrong they look.
    unsure = probabilities.copy()
    unsure[7] = [0.3, 0.35, 0.35]
    assert suspected_label_errors(given, unsure, classes) == []


def test_injected_noise_on_demo_tickets_is_found_and_the_right_label_suggested() -> None:
    frame = generate_tickets(900, "baseline", seed=3)
    rng = np.random.default_rng(0)
    noisy = frame.copy()
    changed = rng.choice(len(frame), size=60, replace=False)
    classes = sorted(frame["label"].unique())
    for row in changed:
        noisy.at[row, "label"] = next(c for c in classes if c != frame.at[row, "label"])
    params = default_params("logistic_regression")
    probabilities, found = out_of_fold_probabilities(
        "logistic_regression", params, noisy, "spanish", seed=0, folds=3
    )
    assert found == classes and probabilities.shape == (900, len(classes))
    assert np.allclose(probabilities.sum(axis=1), 1)
    suspects = audit_labels(noisy, probabilities, found, feedback_rows=100)
    flagged = {s.row for s in suspects}
    precision, recall = precision_recall(flagged, set(changed.tolist()))
    assert recall >= 0.6 and precision >= 3 * len(changed) / len(frame), (precision, recall)
    # The simulator's own ambiguous tickets are flagged on the clean table too; of the flags
    # the injection added, most are injected errors.
    clean, _ = out_of_fold_probabilities(
        "logistic_regression", params, frame, "spanish", seed=0, folds=3
    )
    before = {s.row for s in audit_labels(frame, clean, found)}
    new_precision, _ = precision_recall(flagged - before, set(changed.tolist()))
    assert new_precision >= 0.5, new_precision
    right = [
        s for s in suspects if s.row in set(changed) and s.suggested == frame.at[s.row, "label"]
    ]
    assert len(right) >= 0.8 * len([s for s in suspects if s.row in set(changed)])
    assert {s.source for s in suspects if s.row >= 800} <= {"feedback"}
    assert {s.source for s in suspects if s.row < 800} <= {"base"}
    cleaned = without_suspects(noisy, suspects)
    assert len(cleaned) == 900 - len(suspects) and list(cleaned.index) == list(range(len(cleaned)))


def test_the_audit_is_kept_beside_the_bundle(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    frame = pd.DataFrame(
        {"short_description": ["x", "y", "z"], "close_notes": [""] * 3, "label": ["a", "b", "b"]}
    )
    probabilities = np.array([[0.9, 0.1], [0.1, 0.9], [0.95, 0.05]])
    suspects = audit_labels(frame, probabilities, ["a", "b"])
    assert [(s.row, s.given, s.suggested) for s in suspects] == [(2, "b", "a")]
    store_audit(store, "b1", suspects)
    assert read_audit(store, "b1") == suspects
    with pytest.raises(BundleError, match="no label audit"):
        read_audit(store, "b2")
