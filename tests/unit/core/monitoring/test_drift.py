"""Drift tests against a real (small) model's reference profile and real simulated traffic."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from core.data.simulate import SCENARIOS, generate_tickets
from core.metrics import macro_f1_bootstrap, psi
from core.monitoring.check import family_wise_false_alarms
from core.monitoring.drift import drift_report
from core.monitoring.reference import STATISTIC_ROWS, seeded_sample
from core.predlog.predictions import COUNT_COLUMNS
from core.records import Verdict
from tests.unit.core.monitoring.conftest import SETTINGS, Reference, window_of


def test_same_distribution_rarely_fires(reference: Reference) -> None:
    rng = np.random.default_rng(0)
    fired: Counter[str] = Counter()
    trials = 100
    for _ in range(trials):
        rows = rng.choice(len(reference.pool), size=150, replace=False)
        window = reference.pool.iloc[rows].reset_index(drop=True)
        report = drift_report(window, reference.profile, reference.test_f1, SETTINGS)
        fired.update(test.name for test in report.tests if test.fired)
    assert all(count <= 0.06 * trials for count in fired.values()), fired


@pytest.mark.slow
@pytest.mark.parametrize(("size", "windows"), [(500, 60), (5000, 20), (50_000, 10)])
def test_same_distribution_windows_rarely_start_a_retrain(
    reference: Reference, size: int, windows: int
) -> None:
    """Family-wise: the share of windows in which any test fires (what asks for a retrain)
    stays at or below 5%, from small windows to large ones, with a fifth of them labelled."""
    pool = reference.pool.copy()
    pool.loc[pool.index % 5 != 0, "true_label"] = None
    alarms, fired = family_wise_false_alarms(
        pool, reference.profile, reference.test_f1, SETTINGS, size, windows, seed=size
    )
    assert alarms <= 0.05 * windows, (alarms, fired)


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "baseline"])
def test_every_drift_scenario_is_detected_at_500_predictions(
    reference: Reference, scenario: str
) -> None:
    window = window_of(reference.model, generate_tickets(500, scenario, seed=5))
    report = drift_report(window, reference.profile, reference.test_f1, SETTINGS)
    assert report.drift_detected, report.markdown()
    assert report.reasons and 0 < report.drift_score <= 1


def test_expected_tests_fire_for_their_scenarios(reference: Reference) -> None:
    def fired(scenario: str) -> set[str]:
        window = window_of(reference.model, generate_tickets(500, scenario, seed=5))
        report = drift_report(window, reference.profile, reference.test_f1, SETTINGS)
        return {test.name for test in report.tests if test.fired}

    assert "predicted_class_psi" in fired("prior_shift")
    assert "text_length_ks" in fired("long_texts")
    assert "text_length_ks" in fired("short_texts")
    assert {"oov_rate", "vocabulary_js"} <= fired("new_product")


def test_concept_drift_needs_enough_feedback_and_fires_on_a_new_category(
    reference: Reference,
) -> None:
    window = window_of(reference.model, generate_tickets(500, "new_category", seed=3), 1.0)
    report = drift_report(window, reference.profile, reference.test_f1, SETTINGS)
    concept = next(t for t in report.tests if t.name == "concept_macro_f1_drop")
    assert concept.fired and concept.statistic is not None and concept.statistic > 0.05
    few = window_of(reference.model, generate_tickets(500, "new_category", seed=3), 0.02)
    concept = next(
        t
        for t in drift_report(few, reference.profile, reference.test_f1, SETTINGS).tests
        if t.name == "concept_macro_f1_drop"
    )
    assert concept.verdict == Verdict.INSUFFICIENT and "needed" in concept.detail


def test_below_the_minimum_the_report_says_insufficient_data(reference: Reference) -> None:
    window = reference.pool.iloc[:40].assign(true_label=None)
    report = drift_report(window, reference.profile, reference.test_f1, SETTINGS)
    assert report.insufficient_data and not report.drift_detected
    assert all(test.verdict == Verdict.INSUFFICIENT for test in report.tests)
    assert "insufficient data" in report.markdown()


def test_a_harmless_shift_in_a_large_window_is_significant_but_does_not_fire(
    reference: Reference,
) -> None:
    pool = reference.pool
    commonest = pool["prediction"].value_counts().index[0]
    extra = pool[pool["prediction"] == commonest].sample(frac=0.25, random_state=0)
    window = pd.concat([pool, extra], ignore_index=True)
    report = drift_report(window, reference.profile, reference.test_f1, SETTINGS)
    classes = next(t for t in report.tests if t.name == "predicted_class_psi")
    assert classes.p_value is not None and classes.alpha is not None
    assert classes.p_value < classes.alpha and not classes.fired
    assert classes.statistic is not None and classes.statistic < SETTINGS.psi_threshold


def test_psi_and_bootstrapped_macro_f1() -> None:
    assert psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0
    assert psi(np.array([0.5, 0.5]), np.array([0.9, 0.1])) > 0.25
    truth = ["a", "a", "b", "b", "c", "c"] * 10
    predicted = ["a", "b", "b", "b", "c", "a"] * 10
    observed, replicates = macro_f1_bootstrap(truth, predicted, 200, seed=0)
    assert observed == pytest.approx(f1_score(truth, predicted, average="macro"))
    assert len(replicates) == 200 and 0.4 < replicates.mean() < 0.85


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["baseline", "new_product"])
def test_a_window_larger_than_the_sample_reads_counts_from_all_rows_and_text_from_a_sample(
    reference: Reference, scenario: str
) -> None:
    """Past ``STATISTIC_ROWS``, the report the log's two reads give (the counting columns of
    every row, every column of a sample) is the one the whole frame gives; unchanged traffic
    fires nothing and every shift is still found."""
    frame = window_of(reference.model, generate_tickets(24_000, scenario, seed=7), 0.2)
    whole = drift_report(frame, reference.profile, reference.test_f1, SETTINGS)
    split = drift_report(
        frame[[column for column in COUNT_COLUMNS if column in frame]],
        reference.profile,
        reference.test_f1,
        SETTINGS,
        sample=seeded_sample(frame, STATISTIC_ROWS, SETTINGS.seed),
    )
    assert whole.n_predictions == split.n_predictions == 24_000
    assert [(t.name, t.statistic, t.verdict) for t in whole.tests] == [
        (t.name, t.statistic, t.verdict) for t in split.tests
    ]
    assert split.drift_detected is (scenario != "baseline"), split.markdown()
