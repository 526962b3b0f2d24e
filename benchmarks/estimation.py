"""Backtest of performance estimation without labels: how close CBPE and ATC come to the
macro-F1 measured later, on the same windows, when the labels arrive.

- Simulated drift: a linear SVM trained on Spanish demo tickets (baseline), estimators fitted on
  its held-out set, then windows of 500 tickets from every simulator scenario (5 seeds each).
- Real sets, shifted: IT tickets and Banking77; the model trained on the training split, windows
  of 500 drawn from the held-out split with class priors reweighted (Dirichlet, alpha 0.5), the
  shift a help desk sees when one kind of problem surges.
For each estimator: mean absolute error of the estimated macro-F1 (and accuracy) against the
measured one, and how often the 95% interval covers the measured macro-F1.

    python -m benchmarks.estimation
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

from benchmarks.common import save
from benchmarks.quality import banking77_split, it_tickets_split
from core.data.simulate import SCENARIOS, generate_tickets
from core.data.tables import LABEL, TEXT
from core.monitoring.estimation import (
    DEFAULT_ESTIMATOR,
    estimate_from_probabilities,
    fit_estimation,
)
from core.training.families import build_pipeline, default_params

WINDOW = 500
FAMILY = "linear_svm"


def _fit(train: pd.DataFrame, language: str) -> Any:
    model = build_pipeline(FAMILY, default_params(FAMILY), language, seed=0)
    model.fit(train[TEXT], train[LABEL].to_numpy(dtype=object))
    return model


def _window_rows(model: Any, window: pd.DataFrame, profile: Any, name: str) -> dict[str, Any]:
    probabilities = np.asarray(model.predict_proba(window[TEXT]))
    classes = [str(c) for c in model.classes_]
    predicted = np.asarray(classes, dtype=object)[probabilities.argmax(axis=1)]
    truth = window[LABEL].astype(str).to_numpy()
    measured = float(f1_score(truth, predicted, average="macro"))
    measured_accuracy = float(accuracy_score(truth, predicted))
    estimate = estimate_from_probabilities(probabilities, profile)
    row: dict[str, Any] = {"scenario": name, "measured_macro_f1": measured}
    for estimator in ("cbpe", "atc"):
        value = getattr(estimate, estimator)
        low, high = value.macro_f1_interval
        row[f"{estimator}_macro_f1"] = value.macro_f1
        row[f"{estimator}_error"] = abs(value.macro_f1 - measured)
        row[f"{estimator}_accuracy_error"] = abs(value.accuracy - measured_accuracy)
        row[f"{estimator}_covered"] = low <= measured <= high
    return row


def simulated() -> list[dict[str, Any]]:
    data = generate_tickets(4000, "baseline", seed=1)
    train, test = train_test_split(data, test_size=0.3, random_state=0, stratify=data[LABEL])
    model = _fit(train, "spanish")
    profile = fit_estimation(
        np.asarray(model.predict_proba(test[TEXT])),
        [str(c) for c in model.classes_],
        test[LABEL].astype(str).tolist(),
    )
    rows = []
    for scenario in SCENARIOS:
        for seed in range(5):
            window = generate_tickets(WINDOW, scenario, seed=100 + seed)
            rows.append(_window_rows(model, window, profile, f"demo/{scenario}"))
    return rows


def shifted(name: str, train: pd.DataFrame, test: pd.DataFrame, language: str) -> list[dict]:
    """Estimators fitted on half the held-out split; windows from the other half, reweighted."""
    model = _fit(train, language)
    calibration, pool = train_test_split(test, test_size=0.5, random_state=0, stratify=test[LABEL])
    profile = fit_estimation(
        np.asarray(model.predict_proba(calibration[TEXT])),
        [str(c) for c in model.classes_],
        calibration[LABEL].astype(str).tolist(),
    )
    rng = np.random.default_rng(3)
    labels = sorted(pool[LABEL].unique())
    rows = [_window_rows(model, pool.sample(WINDOW, random_state=1), profile, f"{name}/same")]
    for _ in range(10):
        weights = dict(zip(labels, rng.dirichlet([0.5] * len(labels)), strict=True))
        p = pool[LABEL].map(weights).to_numpy(dtype=float)
        chosen = rng.choice(len(pool), size=WINDOW, replace=False, p=p / p.sum())
        rows.append(_window_rows(model, pool.iloc[chosen], profile, f"{name}/prior-shift"))
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    frame = pd.DataFrame(rows)
    table = []
    for scenario, group in frame.groupby("scenario", sort=False):
        table.append(
            {
                "scenario": scenario,
                "windows": len(group),
                "measured_macro_f1": round(group["measured_macro_f1"].mean(), 4),
                **{
                    f"{e}_{what}": round(float(group[f"{e}_{what}"].mean()), 4)
                    for e in ("cbpe", "atc")
                    for what in ("macro_f1", "error", "accuracy_error", "covered")
                },
            }
        )
    return table


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    started = time.perf_counter()
    rows = simulated()
    skipped = {}
    for name, split in (("it_tickets", it_tickets_split), ("banking77", banking77_split)):
        found = split()
        if isinstance(found, str):
            skipped[name] = found
            continue
        train, test, options = found
        rows += shifted(name, train, test, options["language"])
    table = summarise(rows)
    for line in table:
        print(line)
    overall = {
        e: {
            "mean_abs_error": round(float(np.mean([r[f"{e}_error"] for r in rows])), 4),
            "coverage": round(float(np.mean([r[f"{e}_covered"] for r in rows])), 4),
        }
        for e in ("cbpe", "atc")
    }
    print("overall", overall)
    save(
        "estimation",
        {
            "window": WINDOW,
            "family": FAMILY,
            "default_estimator": DEFAULT_ESTIMATOR,
            "overall": overall,
            "scenarios": table,
            "skipped": skipped,
            "seconds": round(time.perf_counter() - started, 1),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
