"""What the dashboard and Grafana show over time, kept in the prediction log's database:

- ``prediction_hours``: predictions per hour, model version and predicted label, with the sum of
  confidences and the count under 0.5, kept up to date by every group commit, so a month of
  traffic is a few thousand rows to read instead of millions;
- ``drift_reports``: every monitor run's report (each test's statistic, threshold, p-value and
  verdict; the window; the model version; the retrain decision);
- ``promotion_decisions``: every promotion decision (challenger, champion, scores, gain and its
  interval, decision, reason).

``HistoryTables`` is mixed into the prediction log (core/predlog/log.py), whose connections and
transactions it uses.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from core.records import LOW_CONFIDENCE, HourStats, PromotionRecord, StoredDriftReport

if TYPE_CHECKING:
    import contextlib

HISTORY_SCHEMA = """
CREATE TABLE IF NOT EXISTS prediction_hours (
    hour TEXT NOT NULL,
    model_version TEXT NOT NULL,
    prediction TEXT NOT NULL,
    n INTEGER NOT NULL,
    confidence_sum DOUBLE PRECISION NOT NULL,
    low INTEGER NOT NULL,
    PRIMARY KEY (hour, model_version, prediction)
);
CREATE INDEX IF NOT EXISTS predictions_feedback
    ON predictions (created_at, true_label, prediction) WHERE true_label IS NOT NULL;
CREATE TABLE IF NOT EXISTS drift_reports (
    report_id TEXT PRIMARY KEY,
    checked_at TEXT NOT NULL,
    model_version TEXT NOT NULL,
    window_since TEXT,
    drift_detected INTEGER NOT NULL,
    drift_score DOUBLE PRECISION NOT NULL,
    retrain_action TEXT,
    report TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS drift_reports_checked_at ON drift_reports (checked_at);
CREATE TABLE IF NOT EXISTS promotion_decisions (
    decision_id TEXT PRIMARY KEY,
    decided_at TEXT NOT NULL,
    challenger TEXT NOT NULL,
    challenger_version TEXT,
    champion TEXT,
    promoted INTEGER NOT NULL,
    gain DOUBLE PRECISION,
    decision TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS promotion_decisions_decided_at ON promotion_decisions (decided_at);
"""
HOUR_UPSERT = """
INSERT INTO prediction_hours (hour, model_version, prediction, n, confidence_sum, low)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (hour, model_version, prediction) DO UPDATE SET
    n = prediction_hours.n + excluded.n,
    confidence_sum = prediction_hours.confidence_sum + excluded.confidence_sum,
    low = prediction_hours.low + excluded.low
"""
HOUR_BACKFILL = """
INSERT INTO prediction_hours (hour, model_version, prediction, n, confidence_sum, low)
SELECT substr(created_at, 1, 13), model_version, prediction, COUNT(*), SUM(confidence),
       SUM(CASE WHEN confidence < 0.5 THEN 1 ELSE 0 END)
FROM predictions GROUP BY substr(created_at, 1, 13), model_version, prediction
"""
REPORT_COLUMNS = (
    "SELECT report_id, checked_at, model_version, window_since, drift_detected, drift_score, "
    "retrain_action, report FROM drift_reports"
)


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
        json.loads(body),
    )


def hour_of(created_at: str) -> str:
    """The hour bucket of an ISO time: ``2026-11-30T15``."""
    return created_at[:13]


def hour_rows(rows: Sequence[tuple[str, str, str, float]]) -> list[tuple[Any, ...]]:
    """(created_at, model_version, prediction, confidence) rows as hourly upserts."""
    groups: dict[tuple[str, str, str], list[float]] = {}
    for created_at, version, prediction, confidence in rows:
        group = groups.setdefault((hour_of(created_at), version, prediction), [0, 0.0, 0])
        group[0] += 1
        group[1] += confidence
        group[2] += confidence < LOW_CONFIDENCE
    return [(*key, int(n), float(total), int(low)) for key, (n, total, low) in groups.items()]


class _Transactions(Protocol):
    def _write(self) -> contextlib.AbstractContextManager[Any]: ...

    def _read(self) -> contextlib.AbstractContextManager[Any]: ...

    def _sql(self, sql: str) -> str: ...


class HistoryTables:
    """Reads and writes of the history tables, on the prediction log's transactions."""

    def _history_schema_statements(self) -> Iterator[str]:
        for statement in HISTORY_SCHEMA.split(";"):
            if statement.strip():
                yield statement

    def _backfill_hours(self: _Transactions, cursor: Any) -> None:
        """An older log gets its hourly rollup once, from the rows it already has."""
        cursor.execute("SELECT COUNT(*) FROM prediction_hours")
        if int(cursor.fetchone()[0]) == 0:
            cursor.execute(HOUR_BACKFILL)

    def prediction_hours(
        self: _Transactions, since: str, until: str | None = None
    ) -> list[HourStats]:
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

    def feedback_by_day(self: _Transactions, since: str) -> list[tuple[str, str, str, int]]:
        """(day, true label, predicted label, count) of predictions with feedback."""
        sql = (
            "SELECT substr(created_at, 1, 10), true_label, prediction, COUNT(*) FROM predictions "
            "WHERE true_label IS NOT NULL AND created_at >= ? "
            "GROUP BY substr(created_at, 1, 10), true_label, prediction"
        )
        with self._read() as cursor:
            cursor.execute(self._sql(sql), [since])
            return [(str(d), str(t), str(p), int(n)) for d, t, p, n in cursor.fetchall()]

    def record_drift_report(
        self: _Transactions,
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

    def drift_reports(self: _Transactions, since: str) -> list[StoredDriftReport]:
        sql = f"{REPORT_COLUMNS} WHERE checked_at >= ? ORDER BY checked_at"
        with self._read() as cursor:
            cursor.execute(self._sql(sql), [since])
            return [_stored_report(row) for row in cursor.fetchall()]

    def latest_drift_report(self: _Transactions) -> StoredDriftReport | None:
        """The most recent monitor run's report (what /metrics shows), or None."""
        sql = f"{REPORT_COLUMNS} ORDER BY checked_at DESC LIMIT 1"
        with self._read() as cursor:
            cursor.execute(self._sql(sql))
            row = cursor.fetchone()
        return _stored_report(row) if row else None

    def record_promotion(self: _Transactions, record: PromotionRecord) -> None:
        sql = (
            "INSERT INTO promotion_decisions (decision_id, decided_at, challenger, "
            "challenger_version, champion, promoted, gain, decision) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        with self._write() as cursor:
            cursor.execute(
                self._sql(sql),
                (
                    str(uuid.uuid4()),
                    record.decided_at,
                    record.challenger,
                    record.challenger_version,
                    record.champion,
                    int(record.promoted),
                    record.gain,
                    json.dumps(record.as_dict(), ensure_ascii=False),
                ),
            )

    def promotions(self: _Transactions, since: str) -> list[PromotionRecord]:
        sql = "SELECT decision FROM promotion_decisions WHERE decided_at >= ? ORDER BY decided_at"
        with self._read() as cursor:
            cursor.execute(self._sql(sql), [since])
            rows = [json.loads(body) for (body,) in cursor.fetchall()]
        return [
            PromotionRecord(**{**row, "gain_ci": tuple(row["gain_ci"]) if row["gain_ci"] else None})
            for row in rows
        ]
