"""Drift benchmark: how long one drift report takes for windows of 1k, 10k and 50k predictions,
whether each simulated scenario is detected, and the family-wise false-alarm rate (the share of
same-distribution windows in which any test fires, which is what asks for a retrain) at 500,
5,000 and 50,000 predictions (same model, same reference profile). Prints and saves
benchmarks/results/drift.json. Run: ``.venv/bin/python -m benchmarks.drift``."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from benchmarks.common import save
from core.data.simulate import SCENARIOS, generate_tickets
from core.monitoring.check import family_wise_false_alarms
from core.monitoring.drift import drift_report
from core.settings import Settings
from core.training.families import build_pipeline, default_params
from core.training.refit import reference_profile, score

TEXT = ["short_description", "close_notes"]


def window(model: Any, tickets: pd.DataFrame) -> pd.DataFrame:
    probabilities = np.asarray(model.predict_proba(tickets[TEXT]))
    frame = tickets[TEXT].copy()
    frame["prediction"] = np.asarray(model.classes_)[probabilities.argmax(axis=1)]
    frame["confidence"] = probabilities.max(axis=1)
    frame["true_label"] = pd.Series(tickets["label"], dtype=object).values
    return frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.drift", description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,50000")
    args = parser.parse_args(argv)
    settings = Settings()
    data = generate_tickets(5000, "baseline", seed=1)
    train, test = train_test_split(data, test_size=0.2, random_state=0, stratify=data["label"])
    model = build_pipeline("linear_svm", default_params("linear_svm"), "spanish", 0)
    model.fit(train[TEXT], train["label"].to_numpy(dtype=object))
    evaluation, probabilities = score(model, test)
    started = time.perf_counter()
    profile = reference_profile(model, train, test, probabilities, settings)
    profile_seconds = time.perf_counter() - started
    largest = max(int(size) for size in args.sizes.split(","))
    pool = window(model, generate_tickets(largest, "baseline", seed=9))
    timings = {}
    for size in (int(size) for size in args.sizes.split(",")):
        started = time.perf_counter()
        report = drift_report(pool.head(size), profile, evaluation.macro_f1, settings)
        timings[str(size)] = {
            "seconds": round(time.perf_counter() - started, 3),
            "drift_detected": report.drift_detected,
            "fired": [test.name for test in report.tests if test.fired],
        }
        print(f"{size} predictions: {timings[str(size)]}", flush=True)
    scenarios = {}
    for scenario in SCENARIOS:
        report = drift_report(
            window(model, generate_tickets(500, scenario, seed=5)),
            profile,
            evaluation.macro_f1,
            settings,
        )
        scenarios[scenario] = {
            "drift_detected": report.drift_detected,
            "drift_score": round(report.drift_score, 3),
            "fired": [test.name for test in report.tests if test.fired],
        }
        print(f"{scenario}: {scenarios[scenario]}", flush=True)
    labelled = pool.copy()
    labelled.loc[labelled.index % 5 != 0, "true_label"] = None  # a fifth with feedback
    false_alarms = {}
    for size, windows in ((500, 200), (5000, 100), (50_000, 40)):
        alarms, fired = family_wise_false_alarms(
            labelled, profile, evaluation.macro_f1, settings, size, windows, seed=size
        )
        false_alarms[str(size)] = {
            "windows": windows,
            "any_test_fired": alarms,
            "share": round(alarms / windows, 4),
            "by_test": dict(fired),
        }
        print(f"same distribution, {size} predictions: {false_alarms[str(size)]}", flush=True)
    save(
        "drift",
        {
            "reference_profile_seconds": round(profile_seconds, 2),
            "report_seconds_by_window": timings,
            "scenarios_at_500": scenarios,
            "family_wise_false_alarms": false_alarms,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
