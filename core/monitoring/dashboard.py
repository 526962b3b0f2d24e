"""What the dashboard shows, assembled from the log's aggregates (never its rows): traffic and
confidence per hour, the predicted-class mix against the reference profile, each drift test's
statistic against its threshold over the monitor runs, accuracy and macro-F1 on feedback per
day, the latest drift report, and the champions and promotion decisions."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.metrics import macro_f1_from_counts
from core.monitoring.rollout import ShadowSummary, shadow_summary
from core.predlog import PredictionLog, window_start
from core.records import PromotionRecord, StoredDriftReport
from core.release.manifest import Manifest
from core.settings import Settings

WINDOWS = ("24h", "7d", "31d")


@dataclass(frozen=True)
class HourPoint:
    hour: str
    predictions: int
    mean_confidence: float
    low_share: float


@dataclass(frozen=True)
class TestPoint:
    checked_at: str
    statistic: float | None
    threshold: float
    fired: bool


@dataclass(frozen=True)
class DayScore:
    day: str
    labelled: int
    accuracy: float
    macro_f1: float


@dataclass
class DashboardData:
    window: str
    since: str
    generated_at: str
    served: dict[str, Any] | None
    hours: list[HourPoint] = field(default_factory=list)
    class_mix: list[tuple[str, float, float | None]] = field(default_factory=list)
    drift_tests: dict[str, list[TestPoint]] = field(default_factory=dict)
    feedback: list[DayScore] = field(default_factory=list)
    latest_report: StoredDriftReport | None = None
    promotions: list[PromotionRecord] = field(default_factory=list)
    #: The shadow against the champion on the tickets both scored in the window, if any.
    shadow: ShadowSummary | None = None
    #: The served model's global view: per class, the terms that weigh most.
    top_terms: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    #: Per monitor run: (checked at, macro-F1 estimated without labels by the default estimator).
    estimated: list[tuple[str, float]] = field(default_factory=list)
    #: (day, labels received that day), by when they arrived: the desk's side of the loop.
    labels_per_day: list[tuple[str, int]] = field(default_factory=list)


def dashboard_data(
    log: PredictionLog,
    window: str,
    manifest: Manifest | None,
    longest: str = "31d",
    settings: Settings | None = None,
) -> DashboardData:
    """Everything the page draws, for ``window`` (one of WINDOWS)."""
    since = window_start(window, longest=longest)
    settings = settings or Settings()
    shadowed = log.shadow_rows(since, None, settings.monitoring_max_rows)
    shadow = None
    if not shadowed.empty:
        shadow = shadow_summary(
            shadowed, settings.promotion_margin, settings.rollout.min_feedback, settings.seed
        )
    served = None
    if manifest is not None:
        served = {
            "model_version": manifest.model_version,
            "family": manifest.family,
            "trained_at": manifest.created_at,
            "test_macro_f1": manifest.test_macro_f1,
        }
    hours = log.prediction_hours(since)
    reports = log.drift_reports(since)
    return DashboardData(
        window=window,
        since=since,
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        served=served,
        hours=hourly(hours),
        class_mix=class_mix(hours, manifest),
        drift_tests=drift_history(reports),
        feedback=feedback_scores(log.feedback_by_day(since)),
        latest_report=reports[-1] if reports else None,
        promotions=log.promotions(window_start("366d")),
        shadow=shadow,
        top_terms=dict(manifest.top_terms or {}) if manifest is not None else {},
        estimated=estimated_history(reports),
        labels_per_day=log.labels_by_day(since),
    )


def estimated_history(reports: list[StoredDriftReport]) -> list[tuple[str, float]]:
    """(checked at, estimated macro-F1) of the reports that carry an estimate."""
    points = []
    for report in reports:
        estimate = report.report.estimated
        if estimate:
            points.append((report.checked_at, float(estimate[estimate["default"]]["macro_f1"])))
    return points


def hourly(hours: list[Any]) -> list[HourPoint]:
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0])
    for row in hours:
        total = totals[row.hour]
        total[0] += row.n
        total[1] += row.confidence_sum
        total[2] += row.low
    return [
        HourPoint(hour, int(n), total / n if n else 0.0, low / n if n else 0.0)
        for hour, (n, total, low) in sorted(totals.items())
    ]


def class_mix(hours: list[Any], manifest: Manifest | None) -> list[tuple[str, float, float | None]]:
    """(label, share in the window, share in the reference profile), served model's rows."""
    version = manifest.model_version if manifest else None
    counts: Counter[str] = Counter()
    for row in hours:
        if version is None or row.model_version == version:
            counts[row.prediction] += row.n
    total = sum(counts.values())
    profile = manifest.reference_profile if manifest else None
    reference = profile.predicted_class_distribution if profile else {}
    labels = sorted(set(counts) | set(reference))
    return [
        (label, counts[label] / total if total else 0.0, reference.get(label)) for label in labels
    ]


def drift_history(reports: list[StoredDriftReport]) -> dict[str, list[TestPoint]]:
    history: dict[str, list[TestPoint]] = defaultdict(list)
    for report in reports:
        for test in report.report.tests:
            statistic = test.statistic
            history[test.name].append(
                TestPoint(
                    report.checked_at,
                    float(statistic) if statistic is not None else None,
                    test.threshold,
                    test.fired,
                )
            )
    return dict(history)


def feedback_scores(rows: list[tuple[str, str, str, int]]) -> list[DayScore]:
    by_day: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    for day, truth, predicted, n in rows:
        by_day[day][(truth, predicted)] += n
    scores = []
    for day, confusion in sorted(by_day.items()):
        labelled = sum(confusion.values())
        right = sum(n for (t, p), n in confusion.items() if t == p)
        scores.append(DayScore(day, labelled, right / labelled, macro_f1_from_counts(confusion)))
    return scores
