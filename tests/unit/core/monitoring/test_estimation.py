"""Performance estimated without labels: close to what the labels show later on unchanged and
shifted traffic, with an interval that covers it, in the drift report as its own test."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from core.data.simulate import generate_tickets
from core.monitoring.drift import drift_report
from core.monitoring.estimation import estimate_performance, window_matrix
from tests.unit.core.monitoring.conftest import SETTINGS, Reference, window_of


def _measured(window: pd.DataFrame, tickets: pd.DataFrame) -> float:
    return float(f1_score(tickets["label"], window["prediction"], average="macro"))


def test_the_profile_fits_both_estimators_on_the_held_out_set(reference: Reference) -> None:
    estimation = reference.profile.estimation
    assert estimation is not None and 0.5 < estimation.atc_threshold < 1
    assert estimation.calibration_x == sorted(estimation.calibration_x)
    assert abs(estimation.held_out_cbpe_macro_f1 - reference.test_f1) < 0.03
    assert abs(estimation.held_out_accuracy - reference.test_f1) < 0.05


def test_estimates_follow_the_measured_macro_f1_on_unchanged_and_shifted_traffic(
    reference: Reference,
) -> None:
    estimation = reference.profile.estimation
    assert estimation is not None
    for scenario, seed in (("baseline", 11), ("prior_shift", 12), ("long_texts", 13)):
        tickets = generate_tickets(500, scenario, seed=seed)
        window = window_of(reference.model, tickets)
        estimate = estimate_performance(window, estimation, seed=0)
        assert estimate is not None and estimate.rows == 500
        measured = _measured(window, tickets)
        low, high = estimate.cbpe.macro_f1_interval
        assert abs(estimate.cbpe.macro_f1 - measured) < 0.05, (scenario, estimate, measured)
        assert low - 0.02 <= measured <= high + 0.02, (scenario, low, high, measured)
        assert low < estimate.cbpe.macro_f1 < high
        assert abs(estimate.atc.macro_f1 - measured) < 0.08, (scenario, estimate.atc, measured)


def test_a_drop_fires_the_estimated_test_and_unchanged_traffic_does_not(
    reference: Reference,
) -> None:
    def report(scenario: str) -> dict[str, object]:
        window = window_of(reference.model, generate_tickets(500, scenario, seed=5))
        result = drift_report(window, reference.profile, reference.test_f1, SETTINGS)
        test = next(t for t in result.tests if t.name == "estimated_macro_f1_drop")
        assert result.estimated is not None
        return {"fired": test.fired, "drop": test.statistic, "markdown": result.markdown()}

    shifted = report("prior_shift")
    assert shifted["fired"] and float(shifted["drop"]) > 0.1  # type: ignore[arg-type]
    assert "Performance estimated without labels" in str(shifted["markdown"])
    assert not report("baseline")["fired"]


def test_the_logged_top_k_is_completed_evenly_over_the_other_classes() -> None:
    window = pd.DataFrame(
        {
            "prediction": ["a", "b"],
            "top_probabilities": [json.dumps({"a": 0.7, "b": 0.2}), {"b": 0.9, "c": 0.1}],
        }
    )
    dense, predicted = window_matrix(window, ["a", "b", "c", "d"])
    assert np.allclose(dense[0], [0.7, 0.2, 0.05, 0.05])
    assert np.allclose(dense[1], [0.0, 0.9, 0.1, 0.0])
    assert list(predicted) == [0, 1]
