"""What the daily maintenance keeps: the champion and the most recent bundles; retention
cut-offs from settings."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from core.io.store import LocalStore
from core.release.bundle import (
    MODEL_FILE,
    bundle_id_time,
    bundle_key,
    new_bundle_id,
    stored_bundles,
)
from core.release.retention import Cutoffs, MaintenanceReport, bundles_to_delete, grace_cutoff
from core.settings import Settings


def test_the_champion_and_the_most_recent_bundles_are_kept() -> None:
    bundles = [(f"b{i}", f"2026-01-0{i}") for i in range(1, 8)]
    assert bundles_to_delete(bundles, "b1", keep=3) == ["b2", "b3", "b4"]
    assert bundles_to_delete(bundles, "b7", keep=3) == ["b1", "b2", "b3", "b4"]
    assert bundles_to_delete(bundles, None, keep=10) == []
    unknown = [("b9", ""), *bundles[-2:]]
    assert bundles_to_delete(unknown, None, keep=1) == ["b6"], "an unknown age is kept"


def test_bundles_younger_than_the_grace_period_are_kept_whatever_their_rank() -> None:
    bundles = [(f"b{i}", f"2026-01-0{i}") for i in range(1, 8)]
    assert bundles_to_delete(bundles, None, keep=1, younger_than="2026-01-05") == [
        "b1",
        "b2",
        "b3",
        "b4",
    ]
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    cutoff = grace_cutoff(now, Settings(retention_grace_hours=6))
    assert cutoff == datetime(2026, 11, 30, 6, tzinfo=UTC)


def test_a_bundle_without_a_manifest_is_dated_by_its_id(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    bundle_id = new_bundle_id("linear_svm")
    store.put(bundle_key(bundle_id, MODEL_FILE), b"model, manifest not yet written")
    store.put(bundle_key("hand-made", MODEL_FILE), b"model")
    dated = dict(stored_bundles(store))
    assert dated["hand-made"] == ""
    assert abs(datetime.fromisoformat(dated[bundle_id]) - datetime.now(UTC)).total_seconds() < 60
    assert bundle_id_time("20261130T101500Z-svm-abc123") == "2026-11-30T10:15:00+00:00"


def test_cutoffs_follow_the_settings() -> None:
    now = datetime(2026, 11, 30, tzinfo=UTC)
    cutoffs = Cutoffs.at(now, Settings(log_retention_days=90, feedback_retention_days=365))
    assert cutoffs.predictions.startswith("2026-09-01")
    assert cutoffs.feedback.startswith("2025-11-30")


def test_the_report_counts_every_action() -> None:
    report = MaintenanceReport(day_saved="2026-11-29", predictions_deleted=5, bundles_deleted=["a"])
    text = report.markdown()
    assert "| prediction rows deleted | 5 |" in text and "| bundles deleted | 1 |" in text
