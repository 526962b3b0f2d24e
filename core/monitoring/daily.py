"""The daily save: one UTC day's window metrics, kept in the log's database for the dashboard
(the nightly maintenance saves yesterday; an operator may save any day through the service)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from core.metrics import window_metrics
from core.predlog import PredictionLog


def save_day(
    log: PredictionLog, day: date, served_labels: Sequence[str] | None
) -> tuple[str, dict[str, Any]]:
    """Aggregate ``day`` (UTC midnight to midnight) and store it, replacing an earlier save;
    returns (saved at, metrics)."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    aggregates = log.aggregates(start.isoformat(), (start + timedelta(days=1)).isoformat())
    metrics = window_metrics(aggregates, served_labels)
    return log.save_daily(day.isoformat(), metrics), metrics
