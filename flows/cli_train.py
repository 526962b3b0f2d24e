"""``tickets train``: a training run on a table, or the reproduction of a stored model, and its
report (leaderboard, test scores, promotion; one JSON line with ``--json``)."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from core.settings import Settings
from flows.prefect_server import temporary_prefect_api

if TYPE_CHECKING:
    from core.training.refit import TrainingSummary


def print_summary(summary: TrainingSummary) -> None:
    print("\nLeaderboard (cross-validated macro-F1 on the training split, +/- standard error):")
    for row in summary.leaderboard:
        score = "failed" if row.cv_macro_f1 is None else f"{row.cv_macro_f1:.4f}"
        spread = f"+/- {row.cv_std_error:.4f}" if row.cv_std_error is not None else ""
        print(
            f"  {row.family:<20} {score:>8} {spread:<10} {row.cv_folds:>2} folds "
            f"{row.trials:>3} trials  {row.fit_seconds:>7.1f}s"
        )
    if summary.selection:
        print(f"Selected: {summary.selection}")
    print(
        f"\nChampion candidate: {summary.champion_family}  test macro-F1 "
        f"{summary.test_macro_f1:.4f}  weighted F1 {summary.test_weighted_f1:.4f}  "
        f"accuracy {summary.test_accuracy:.4f}"
    )
    print(f"Model version {summary.model_version}; bundle {summary.bundle_uri}")
    print(f"Promoted: {summary.promoted} ({summary.promotion_reason})")


def train_and_report(settings: Settings, data: str, test_data: str | None, as_json: bool) -> int:
    from core.data.tables import load_training_data

    load_training_data(settings, data, test_data)  # fail fast, before Prefect starts
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.progress import study_progress
    from flows.train import train

    with temporary_prefect_api(), study_progress(settings.families, settings.trials):
        summary = train(settings=settings, data_path=data, test_data_path=test_data)
    print_summary(summary)
    if as_json:
        print(json.dumps(summary.as_json()))
    return 0


def reproduce_and_report(settings: Settings, version: str, as_json: bool) -> int:
    from core.io.store import open_store
    from core.release.registry import manifest_voucher
    from core.release.snapshots import find_manifest

    store = open_store(settings)
    find_manifest(store, version, manifest_voucher(settings, store))  # fail fast, in one line
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.train import train

    with temporary_prefect_api():
        summary = train(settings=settings, reproduce=version)
    print_summary(summary)
    if as_json:
        print(json.dumps(summary.as_json()))
    return 0
