"""What the dashboard and Grafana show over time, kept in the prediction log's database:

- ``prediction_hours``: predictions per hour, model version and predicted label, with the sum of
  confidences and the count under 0.5, kept up to date by every group commit, so a month of
  traffic is a few thousand rows to read instead of millions;
- ``drift_reports``: every monitor run's report (each test's statistic, threshold, p-value and
  verdict; the window; the model version; the retrain decision);
- ``promotion_decisions``: every promotion decision (challenger, champion, scores, gain and its
  interval, decision, reason).

- ``daily_metrics``: each day's metrics, saved once the day is over (the daily save).

``HistoryTables`` is mixed into the prediction log (core/predlog/log.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from core.predlog.dialect import Tables
from core.records import (
    LOW_CONFIDENCE,
    HourStats,
    PromotionRecord,
    StoredDriftReport,
    StoredReport,
)

HOUR_UPSERT = """
INSERT INTO prediction_hours (hour, model_version, prediction, n, confidence_sum, low)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (hour, model_version, prediction) DO UPDATE SET
    n = prediction_hours.n + excluded.n,
    confidence_sum = prediction_hours.confidence_sum + excluded.confidence_sum,
    low = prediction_hours.low + excluded.low
"""
SAVE_DAILY_SQL = """
INSERT INTO daily_metrics (day, saved_at, metrics) VALUES (?, ?, ?)
ON CONFLICT (day) DO UPDATE SET saved_at = excluded.saved_at, metrics = excluded.metrics
"""
REPORT_COLUMNS = (
    "SELECT report_id, checked_at, model_version, window_since, drift_detected, drift_score, "
    "retrain_action, report FROM drift_reports"
)


#: Namespace of promotion decision ids (uuid5 of PromotionRecord.decision_key).
PROMOTION_NAMESPACE = uuid.UUID("6f1c8a52-3d0e-4b7a-9f65-2a4e1c7d9b30")


def _stored_report(row: Sequence[Any]) -> StoredDriftReport:
    rid, at, version, since, detected, score, action, body = row
    return StoredDriftReport(
        str(rid),
        str(at),
        str(version),
        since,
        bool(detected),
        float(score),
        action,
        StoredReport.model_validate_json(body),
    )


def hour_of(created_at: str) -> str:
    """The hour bucket of an ISO time: ``2026-11-30T15``."""
    return created_at[:13]


def hour_rows(rows: Sequence[tuple[str, str, str, float]]) -> list[tuple[Any, ...]]:
    """(created_at, model_version, prediction, confidence) rows as hourly upserts, sorted by
    key: two workers whose group commits touch the same hours then lock those rows in the same
    order, and PostgreSQL cannot deadlock them (in batch order it did, failing whole groups)."""
    groups: dict[tuple[str, str, str], list[float]] = {}
    for created_at, version, prediction, confidence in rows:
        group = groups.setdefault((hour_of(created_at), version, prediction), [0, 0.0, 0])
        group[0] += 1
        group[1] += confidence
        group[2] += confidence < LOW_CONFIDENCE
    return [(*key, int(n), float(t), int(low)) for key, (n, t, low) in sorted(groups.items())]


class HistoryTables(Tables):
    """Reads and writes of the history tables and the saved daily aggregates."""

    def prediction_hours(self, since: str, until: str | None = None) -> list[HourStats]:
        where, params = "hour >= ?", [since[:13]]
        if until:
            where += " AND hour < ?"
            params.append(until[:13])
        sql = (
            "SELECT hour, model_version, prediction, n, confidence_sum, low FROM prediction_hours "
            f"WHERE {where} ORDER BY hour"
        )
        with self._read() as cursor:
            cursor.execute(self._sql(sql), params)
            return [
                HourStats(str(h), str(v), str(p), int(n), float(s), int(low))
                for h, v, p, n, s, low in cursor.fetchall()
            ]

    def feedback_by_day(self, since: str) -> list[tuple[str, str, str, int]]:
        """(day, true label, predicted label, count) of predictions with feedback."""
        sql = (
            "SELECT substr(created_at, 1, 10), true_label, prediction, COUNT(*) FROM predictions "
            "WHERE true_label IS NOT NULL AND created_at >= ? "
            "GROUP BY substr(created_at, 1, 10), true_label, prediction"
        )
        with self._read() as cursor:
            cursor.execute(self._sql(sql), [since])
            return [(str(d), str(t), str(p), int(n)) for d, t, p, n in cursor.fetchall()]

    def labels_by_day(self, since: str) -> list[tuple[str, int]]:
        """(day, labels received that day) since ``since``, by when the label arrived (not
        when the ticket was predicted: labels come days later)."""
        sql = (
            "SELECT substr(feedback_at, 1, 10), COUNT(*) FROM predictions "
            "WHERE feedback_at IS NOT NULL AND feedback_at >= ? "
            "GROUP BY substr(feedback_at, 1, 10) ORDER BY 1"
        )
        with self._read() as cursor:
            cursor.execute(self._sql(sql), [since])
            return [(str(day), int(n)) for day, n in cursor.fetchall()]

    def record_drift_report(
        self,
        checked_at: str,
        model_version: str,
        window_since: str | None,
        report: dict[str, Any],
        retrain_action: str | None,
    ) -> str:
        report_id = str(uuid.uuid4())
        sql = (
            "INSERT INTO drift_reports (report_id, checked_at, model_version, window_since, "
            "drift_detected, drift_score, retrain_action, report) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        with self._write() as cursor:
            cursor.execute(
                self._sql(sql),
                (
                    report_id,
                    checked_at,
                    model_version,
                    window_since,
                    int(bool(report.get("drift_detected"))),
                    float(report.get("drift_score", 0.0)),
                    retrain_action,
                    json.dumps(report, ensure_ascii=False),
                ),
            )
        return report_id

    def drift_reports(self, since: str) -> list[StoredDriftReport]:
        sql = f"{REPORT_COLUMNS} WHERE checked_at >= ? ORDER BY checked_at"
        with self._read() as cursor:
            cursor.execute(self._sql(sql), [since])
            return [_stored_report(row) for row in cursor.fetchall()]

    def latest_drift_report(self) -> StoredDriftReport | None:
        """The most recent monitor run's report (what /metrics shows), or None."""
        sql = f"{REPORT_COLUMNS} ORDER BY checked_at DESC LIMIT 1"
        with self._read() as cursor:
            cursor.execute(self._sql(sql))
            row = cursor.fetchone()
        return _stored_report(row) if row else None

    def record_promotion(self, record: PromotionRecord) -> None:
        """Keep a decision once: a retried promotion writes the same row (decision_key)."""
        sql = (
            "INSERT INTO promotion_decisions (decision_id, decided_at, challenger, "
            "challenger_version, champion, promoted, gain, decision) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (decision_id) DO NOTHING"
        )
        with self._write() as cursor:
            cursor.execute(
                self._sql(sql),
                (
                    str(uuid.uuid5(PROMOTION_NAMESPACE, record.decision_key())),
                    record.decided_at,
                    record.challenger,
                    record.challenger_version,
                    record.champion,
                    int(record.promoted),
                    record.gain,
                    json.dumps(record.as_dict(), ensure_ascii=False),
                ),
            )

    def promotions(self, since: str) -> list[PromotionRecord]:
        sql = "SELECT decision FROM promotion_decisions WHERE decided_at >= ? ORDER BY decided_at"
        with self._read() as cursor:
            cursor.execute(self._sql(sql), [since])
            rows = [json.loads(body) for (body,) in cursor.fetchall()]
        return [
            PromotionRecord(**{**row, "gain_ci": tuple(row["gain_ci"]) if row["gain_ci"] else None})
            for row in rows
        ]

    def delete_history_before(self, reports: str, decisions: str) -> dict[str, int]:
        """Prune the history tables: drift reports checked before ``reports`` (an ISO time),
        promotion decisions and daily aggregates before ``decisions``; counts by table."""
        with self._write() as cursor:
            counts = {}
            for table, column, cutoff in (
                ("drift_reports", "checked_at", reports),
                ("promotion_decisions", "decided_at", decisions),
                ("daily_metrics", "day", decisions[:10]),
            ):
                cursor.execute(self._sql(f"DELETE FROM {table} WHERE {column} < ?"), (cutoff,))
                counts[table] = int(cursor.rowcount)
        return counts

    def save_daily(self, day: str, metrics: dict[str, Any]) -> str:
        """Store (or replace) the aggregate of ``day`` (YYYY-MM-DD); returns the time saved."""
        saved_at = datetime.now(UTC).isoformat(timespec="microseconds")
        payload = json.dumps(metrics, ensure_ascii=False, sort_keys=True)
        with self._write() as cursor:
            cursor.execute(self._sql(SAVE_DAILY_SQL), (day, saved_at, payload))
        return saved_at

    def daily(self) -> dict[str, dict[str, Any]]:
        """Saved daily aggregates by day."""
        with self._read() as cursor:
            cursor.execute(self._sql("SELECT day, metrics FROM daily_metrics ORDER BY day"))
            rows = cursor.fetchall()
        return {day: json.loads(metrics) for day, metrics in rows}
