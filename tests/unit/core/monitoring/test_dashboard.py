"""The dashboard's numbers come from the log's aggregates and its page escapes what users wrote."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.monitoring.dashboard import (
    DashboardData,
    class_mix,
    dashboard_data,
    drift_history,
    feedback_scores,
    hourly,
)
from core.predlog import PredictionLog, PredictionRecord, ShadowScore
from core.records import HourStats, StoredDriftReport, StoredReport
from core.release.manifest import (
    ConfidenceProfile,
    LengthProfile,
    Manifest,
    MlflowRef,
    ReferenceProfile,
    VocabularyProfile,
)
from serving.dashboard import render


def _manifest(version: str = "2") -> Manifest:
    return Manifest(
        bundle_id="b",
        family="linear_svm",
        labels=["acceso", "red"],
        metrics={"test_macro_f1": 0.9},
        mlflow=MlflowRef(model_version=version),
        reference_profile=ReferenceProfile(
            text_length=LengthProfile(bin_edges=[0, 100], sample=[50]),
            predicted_class_distribution={"acceso": 0.5, "red": 0.5},
            vocabulary=VocabularyProfile(token_shares={"clave": 1.0}, covered_share=1, oov_rate=0),
            confidence=ConfidenceProfile(mean=0.8, low_share=0.1),
        ),
    )


def test_hours_add_up_across_models_and_labels() -> None:
    rows = [
        HourStats("2026-11-30T10", "1", "acceso", 3, 2.4, 1),
        HourStats("2026-11-30T10", "2", "red", 1, 0.2, 1),
        HourStats("2026-11-30T11", "2", "red", 2, 1.8, 0),
    ]
    points = hourly(rows)
    assert [(p.hour, p.predictions) for p in points] == [
        ("2026-11-30T10", 4),
        ("2026-11-30T11", 2),
    ]
    assert points[0].mean_confidence == pytest.approx(2.6 / 4)
    assert points[0].low_share == pytest.approx(0.5)


def test_class_mix_counts_only_the_served_model_and_shows_the_reference() -> None:
    rows = [
        HourStats("2026-11-30T10", "1", "acceso", 100, 90.0, 0),
        HourStats("2026-11-30T10", "2", "acceso", 1, 0.9, 0),
        HourStats("2026-11-30T10", "2", "nuevo", 3, 0.9, 0),
    ]
    mix = class_mix(rows, _manifest("2"))
    assert mix == [("acceso", 0.25, 0.5), ("nuevo", 0.75, None), ("red", 0.0, 0.5)]


def test_feedback_scores_per_day() -> None:
    rows = [
        ("2026-11-29", "acceso", "acceso", 3),
        ("2026-11-29", "red", "acceso", 1),
        ("2026-11-30", "red", "red", 2),
    ]
    first, second = feedback_scores(rows)
    assert (first.day, first.labelled, first.accuracy) == ("2026-11-29", 4, 0.75)
    # acceso: precision 3/4, recall 1 -> F1 6/7; red: F1 0 -> macro 3/7
    assert first.macro_f1 == pytest.approx(3 / 7)
    assert (second.accuracy, second.macro_f1) == (1.0, 1.0)


def test_drift_history_keeps_each_test_in_order() -> None:
    def report(at: str, statistic: float | None, verdict: str) -> StoredDriftReport:
        test = {"name": "vocabulary_js", "statistic": statistic, "threshold": 0.05}
        test["verdict"] = verdict
        fired = verdict == "drift"
        body = StoredReport.model_validate({"tests": [test]})
        return StoredDriftReport("r", at, "2", None, fired, 0.0, None, body)

    history = drift_history([report("t1", 0.01, "no drift"), report("t2", None, "drift")])
    points = history["vocabulary_js"]
    assert [(p.checked_at, p.statistic, p.fired) for p in points] == [
        ("t1", 0.01, False),
        ("t2", None, True),
    ]


def test_dashboard_data_from_a_real_log(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "log.sqlite")
    now = datetime.now(UTC)
    old = (now - timedelta(days=3)).isoformat()
    recent = (now - timedelta(hours=2)).isoformat()
    log.record(
        [
            PredictionRecord("a", "2", "t", "", "acceso", 0.9, {}, "acceso", recent),
            PredictionRecord("b", "2", "t", "", "red", 0.4, {}, None, recent),
            PredictionRecord("c", "2", "t", "", "red", 0.9, {}, None, old),
        ]
    )
    log.record_shadow([ShadowScore("a", "3", "red", 0.7), ShadowScore("b", "3", "red", 0.6)])
    manifest = _manifest().model_copy(update={"top_terms": {"acceso": [("clave", 1.5)]}})
    day = dashboard_data(log, "24h", manifest)
    week = dashboard_data(log, "7d", _manifest())
    log.close()
    assert day.shadow is not None and (day.shadow.scored, day.shadow.agreement) == (2, 0.5)
    assert [(d.champion_label, d.shadow_label, d.examples) for d in day.shadow.disagreements] == [
        ("acceso", "red", ["a"])
    ]
    page = render(day)
    assert 'data-chart="shadow"' in page and "<td>acceso</td><td>red</td><td>1</td>" in page
    assert 'data-chart="top-terms"' in page and "<th>acceso</th><td>clave</td>" in page
    assert week.shadow is not None and week.shadow.scored == 2
    assert sum(p.predictions for p in day.hours) == 2
    assert sum(p.predictions for p in week.hours) == 3
    assert [(s.labelled, s.accuracy) for s in day.feedback] == [(1, 1.0)]
    assert day.served is not None and day.served["model_version"] == "2"


def test_the_page_escapes_what_users_and_models_wrote() -> None:
    hostile = "<script>alert(1)</script>"
    data = DashboardData(
        window="24h",
        since="2026-11-29T16:00:00+00:00",
        generated_at="2026-11-30T16:00:00+00:00",
        served=None,
        class_mix=[(hostile, 1.0, None)],
        latest_report=StoredDriftReport(
            "r",
            "2026-11-30T15:00",
            "2",
            None,
            True,
            0.3,
            "requested",
            StoredReport(reasons=[hostile]),
        ),
    )
    page = render(data)
    assert "No ticket scored by a shadow" in page and "has no global view" in page
    assert hostile not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page, "the page runs no script at all"
