"""A drift check of one served model, the same for the monitor flow and the service: the window
of the log it reads (a seeded sample of its own predictions), its report against the profile in
its manifest, and the false-alarm rate of the whole family of tests on same-distribution windows."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from core.errors import BundleError
from core.monitoring.drift import DriftReport, drift_report
from core.monitoring.reference import STATISTIC_ROWS
from core.predlog import DriftWindow, PredictionLog
from core.release.manifest import Manifest, ReferenceProfile
from core.settings import Settings


class NoReferenceProfile(BundleError):
    """The model's manifest carries no reference profile to compare against."""


def model_window(
    log: PredictionLog, since: str, manifest: Manifest, settings: Settings
) -> DriftWindow:
    """The rows a drift report of this model reads, the same for the monitor flow and the
    service: the counting columns of its predictions since ``since`` (a seeded sample of at
    most ``monitoring_max_rows`` of them when there are more), and every column of a seeded
    sample of ``STATISTIC_ROWS`` of them."""
    return log.drift_window(
        since,
        settings.monitoring_max_rows,
        STATISTIC_ROWS,
        settings.seed,
        model_version=manifest.model_version,
    )


def report_for_model(window: DriftWindow, manifest: Manifest, settings: Settings) -> DriftReport:
    """Drift of the predictions the manifest's model made in ``window`` against its profile."""
    version = manifest.model_version
    profile = manifest.reference_profile
    if not profile:
        raise NoReferenceProfile(f"model {version} has no reference profile in its manifest")

    def own(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[frame["model_version"].astype(str) == version].reset_index(drop=True)

    return drift_report(
        own(window.rows), profile, manifest.test_macro_f1, settings, sample=own(window.sample)
    )


def family_wise_false_alarms(
    pool: pd.DataFrame,
    profile: ReferenceProfile,
    reference_f1: float | None,
    settings: Settings,
    size: int,
    windows: int,
    seed: int = 0,
) -> tuple[int, Counter[str]]:
    """How many of ``windows`` same-distribution windows of ``size`` predictions (drawn with
    replacement from ``pool``) would start a retrain, i.e. fire any test; and which fired. This
    is the false-alarm rate that matters: any test firing is what asks for a retrain."""
    rng = np.random.default_rng(seed)
    alarms = 0
    fired: Counter[str] = Counter()
    for _ in range(windows):
        rows = rng.integers(0, len(pool), size=size)
        report = drift_report(
            pool.iloc[rows].reset_index(drop=True), profile, reference_f1, settings
        )
        alarms += int(report.drift_detected)
        fired.update(test.name for test in report.tests if test.fired)
    return alarms, fired
