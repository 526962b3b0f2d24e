"""The history tables: the hourly rollup agrees with the rows (and is built for an older log),
drift reports and promotion decisions read back as written."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from core.predlog import PredictionLog, PredictionRecord
from core.predlog.history import hour_rows
from core.records import PromotionRecord


def _record(i: int, hour: int, label: str, confidence: float) -> PredictionRecord:
    created = f"2026-11-30T{hour:02d}:{i % 60:02d}:00.000000+00:00"
    return PredictionRecord(f"r{hour}-{i}", "1", "clave", "", label, confidence, {}, None, created)


def test_the_hourly_rollup_agrees_with_the_rows(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "log.db")
    log.record([_record(i, 10, "a", 0.9) for i in range(5)] + [_record(5, 10, "b", 0.3)])
    log.record([_record(i, 11, "a", 0.4) for i in range(3)])
    log.record([_record(9, 10, "a", 0.8)])
    hours = {(h.hour, h.prediction): h for h in log.prediction_hours("2026-11-30T00")}
    assert hours[("2026-11-30T10", "a")].n == 6 and hours[("2026-11-30T10", "b")].low == 1
    assert abs(hours[("2026-11-30T10", "a")].confidence_sum - 5.3) < 1e-9
    assert hours[("2026-11-30T11", "a")].low == 3
    assert sum(h.n for h in hours.values()) == log.count()


def test_an_older_log_gets_its_rollup_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    log = PredictionLog(path)
    log.record([_record(i, 8, "a", 0.7) for i in range(4)])
    log.close()
    raw = sqlite3.connect(path)
    raw.execute("DELETE FROM prediction_hours")  # as if written before the rollup existed
    raw.commit()
    raw.close()
    assert sum(h.n for h in PredictionLog(path).prediction_hours("2026-11-30T00")) == 4


def test_reports_and_promotions_read_back(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "log.db")
    report = {"drift_detected": True, "drift_score": 0.5, "tests": [], "reasons": ["x: y"]}
    log.record_drift_report("2026-11-30T10:00:00+00:00", "3", None, report, "requested")
    (stored,) = log.drift_reports("2026-11-01")
    assert stored.model_version == "3" and stored.report.reasons == ["x: y"]
    assert stored.drift_detected and stored.retrain_action == "requested"
    record = PromotionRecord(
        "2026-11-30T11:00:00+00:00", "b2", "2", "b1", "1", 0.9, 0.8, 0.1, (0.05, 0.15), True, "ok"
    )
    log.record_promotion(record)
    assert log.promotions("2026-11-01") == [record]


def test_hourly_upserts_come_in_key_order_whatever_the_batch_order() -> None:
    """Two group commits touching the same hours lock those rows in one order (no deadlock)."""
    rows = [
        ("2026-12-01T10:05:00", "2", "b", 0.9),
        ("2026-12-01T09:05:00", "2", "a", 0.4),
        ("2026-12-01T10:06:00", "1", "a", 0.8),
        ("2026-12-01T10:07:00", "2", "b", 0.3),
    ]
    upserts = hour_rows(rows)
    assert upserts == hour_rows(rows[::-1])
    assert [row[:3] for row in upserts] == sorted(row[:3] for row in upserts)
    assert upserts[-1][:4] == ("2026-12-01T10", "2", "b", 2) and upserts[-1][5] == 1
