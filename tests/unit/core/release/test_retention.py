"""What the daily maintenance keeps: the champion and the most recent bundles; retention
cut-offs from settings."""

from __future__ import annotations

from datetime import UTC, datetime

from core.release.retention import Cutoffs, MaintenanceReport, bundles_to_delete
from core.settings import Settings


def test_the_champion_and_the_most_recent_bundles_are_kept() -> None:
    bundles = [(f"b{i}", f"2026-01-0{i}") for i in range(1, 8)]
    assert bundles_to_delete(bundles, "b1", keep=3) == ["b2", "b3", "b4"]
    assert bundles_to_delete(bundles, "b7", keep=3) == ["b1", "b2", "b3", "b4"]
    assert bundles_to_delete(bundles, None, keep=10) == []
    unreadable = [("b9", ""), *bundles[-2:]]
    assert bundles_to_delete(unreadable, None, keep=2) == ["b9"], "unreadable counts as oldest"


def test_cutoffs_follow_the_settings() -> None:
    now = datetime(2026, 11, 30, tzinfo=UTC)
    cutoffs = Cutoffs.at(now, Settings(log_retention_days=90, feedback_retention_days=365))
    assert cutoffs.predictions.startswith("2026-09-01")
    assert cutoffs.feedback.startswith("2025-11-30")


def test_the_report_counts_every_action() -> None:
    report = MaintenanceReport(day_saved="2026-11-29", predictions_deleted=5, bundles_deleted=["a"])
    text = report.markdown()
    assert "| prediction rows deleted | 5 |" in text and "| bundles deleted | 1 |" in text
